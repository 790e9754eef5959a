/*
 * buffers.pml: a Promela model of candidate buffering and the zombie
 * handshake (runtime/collector.c, "Candidate roots"; PITFALLS 14), the part
 * of the protocol that rcgc.pml abstracts away (its collector picks any
 * live object as a root).  Checked by tests/model/run_model.sh as the ctest
 * tests model.buffers and model.buffers_<bug>.
 *
 * What it checks: an object is buffered once per UNBUFFERED cleared; an
 * entry in a root buffer holds no reference, yet the memory it names is
 * never freed before the entry's consumer is done with it; the memory is
 * freed exactly once, by whoever of the last releaser (rcgc__dispose) and
 * the entry's consumer (take_candidate) comes second; at the end no entry
 * is left and the memory is gone (no leak).
 *
 * Configuration: one tracked object, held by two mutators (one reference
 * each; its count is one atomic word here: biased counting's split is
 * rcgc.pml's subject, and the order that matters here is buffer-then-
 * decrement).  Each mutator makes up to K (default 2) increment-decrement
 * pairs (run_model.sh: K = 3, 3 898 516 states), whose decrement may buffer
 * the object, then drops its reference.
 * The collector consumes entries as they appear, nondeterministically as a
 * member (pin and flag: rcgc__pin_flag with UNBUFFERED), as an object some
 * round already marked (try-increment, then UNBUFFERED), and, holding the
 * pin, may buffer it again (rebuffer: a failed Delta-test); then it
 * unflags and drops its pin (which may be the last reference; the
 * collector's own decrements buffer nothing, th->no_buffer).
 *
 * A mutator may also find no memory for a root chunk (rcgc__buffer_root):
 * the object is then marked MISSED, its UNBUFFERED set again, and the
 * missed count raised; the collector's find_missed pins every MISSED object
 * still in the registry (snapshot_with, under the shard's lock: an object
 * being disposed has left it), clears MISSED, buffers it if it clears
 * UNBUFFERED itself, and unpins it.
 *
 * Encoding: ow is the owner word's flags (the tid is left out: nothing here
 * depends on it): OWNER_SCAN 1, OWNER_UNBUFFERED 2, OWNER_ZOMBIE 4, as in
 * include/rcgc/biased.h.  cnt is the count; a try-increment refuses 0.
 * Every load and read-modify-write of ow or cnt is one step; a decision
 * made on a loaded value is a later step, as in the C code.
 *
 * Seeded bugs (-DBUG_...; each is caught):
 *   BUG_BUFFER_AFTER   a decrement buffers after it decrements, when its
 *                      reference no longer holds the object: the other
 *                      mutator's last decrement frees it in between.
 *   BUG_ZOMBIE_STORE   rcgc__dispose sets ZOMBIE by load and store instead
 *                      of fetch_or: the consumer's UNBUFFERED is lost, and
 *                      the memory with it (or freed twice).
 *   BUG_NO_ZOMBIE_FREE the consumer of a dead object's entry does not free
 *                      a zombie: leaked.
 *   BUG_NO_CONSUME     a member is flagged without UNBUFFERED (the entry
 *                      taken, the bit left clear): its death makes a zombie
 *                      that no entry names any more.
 *   BUG_MISSED_TWICE   find_missed buffers a MISSED object without clearing
 *                      UNBUFFERED itself: a second entry, which outlives
 *                      the object.
 */

#ifndef K
#define K 2
#endif

#define SCAN   1
#define UNBUF  2
#define ZOMBIE 4

byte ow = UNBUF;            /* tracked, in no root buffer */
byte cnt = 2;               /* the mutators' two references */
byte entries = 0;           /* root-buffer entries naming the object */
bool freed = false;
byte frees = 0;
byte done = 0;              /* mutators finished */
bool missed_bit = false;    /* gc_bits' MISSED */
byte missed = 0;            /* the missed count */
bool inreg = true;          /* in the registry of tracked objects */

/* Any touch of the object's memory. */
#define ACCESS  assert(!freed)

inline free_memory()
{
    d_step { assert(!freed); freed = true; frees++ }
}

/* rcgc__dispose_unlinked, tracked: free now, or leave the memory to the
   entry's consumer. */
inline dispose(t)
{
    d_step { ACCESS; inreg = false };        /* rcgc__registry_remove */
    t = ow;                                 /* load (acquire) */
    if
    :: (t & UNBUF) -> free_memory()
    :: else ->
#ifndef BUG_ZOMBIE_STORE
        d_step { ACCESS; t = ow; ow = ow | ZOMBIE }     /* fetch_or (acq_rel) */
#else
        d_step { ACCESS; t = ow };
        d_step { ACCESS; ow = t | ZOMBIE }
#endif
        if
        :: (t & UNBUF) -> free_memory()
        :: else -> skip                     /* a zombie: the consumer frees */
        fi
    fi
}

/* rcgc__buffer_root after rcgc__maybe_buffer's load saw UNBUFFERED. */
inline buffer(t)
{
    d_step { ACCESS; t = ow; ow = ow & ~UNBUF };        /* fetch_and */
    if
    :: (t & UNBUF) -> entries++             /* ours to buffer: once */
    :: (t & UNBUF) ->                       /* ... but no memory for a chunk */
        d_step { ACCESS; missed_bit = true };
        d_step { ACCESS; ow = ow | UNBUF };
        missed++
    :: else -> skip
    fi
}

/* A decrement by a holder; buffers the object first if its owner word
   says it is not buffered (whether the count stays nonzero is decided by
   the decrement itself: buffering may be for nothing, never too late). */
inline decref(t, last)
{
#ifndef BUG_BUFFER_AFTER
    ACCESS;
    t = ow;                                 /* the owner word the count path loads */
    if
    :: (t & UNBUF) -> buffer(t)
    :: else -> skip
    fi;
#endif
    d_step { ACCESS; assert(cnt > 0); cnt--; last = (cnt == 0) };
#ifdef BUG_BUFFER_AFTER
    if
    :: !last ->
        ACCESS;
        t = ow;
        if
        :: (t & UNBUF) -> buffer(t)
        :: else -> skip
        fi
    :: else -> skip
    fi;
#endif
    if
    :: last -> dispose(t)                   /* teardown, then memory */
    :: else -> skip
    fi
}

proctype mutator()
{
    byte k = K, t;
    bool last;

    do
    :: k > 0 ->
        k--;
        d_step { ACCESS; cnt++ };           /* a holder's increment */
        decref(t, last)
    :: break
    od;
    decref(t, last);                        /* its own reference */
    done++
}

/* The collector's decrement of its pin: buffers nothing. */
inline unpin(t, last)
{
    d_step { ACCESS; assert(cnt > 0); cnt--; last = (cnt == 0) };
    if
    :: last -> dispose(t)
    :: else -> skip
    fi
}

/* take_candidate, for one entry: the entry keeps the memory. */
inline take(t, last)
{
    ACCESS;
    if
    :: d_step { cnt > 0 -> cnt++ } ->       /* pinned (try-increment) */
        if
        :: /* a member: rcgc__pin_flag(h, UNBUFFERED) */
#ifndef BUG_NO_CONSUME
            d_step { ACCESS; ow = ow | SCAN | UNBUF }
#else
            d_step { ACCESS; ow = ow | SCAN }
#endif
        :: /* marked by an earlier round, or frozen: a plain pin */
            d_step { ACCESS; ow = ow | UNBUF }
        fi;
        if
        :: buffer(t)                        /* rebuffer: back to the candidates */
        :: skip
        fi;
        d_step { ACCESS; ow = ow & ~SCAN }; /* unflag (fetch_and) */
        unpin(t, last)
    :: d_step { cnt == 0 -> skip } ->       /* dead: the entry goes */
        d_step { ACCESS; t = ow; ow = ow | UNBUF };     /* fetch_or (acq_rel) */
#ifndef BUG_NO_ZOMBIE_FREE
        if
        :: (t & ZOMBIE) -> free_memory()
        :: else -> skip
        fi
#endif
    fi
}

/* find_missed, for the one object. */
inline find_missed(t, last)
{
    if
    :: d_step { inreg && missed_bit && cnt > 0 -> cnt++ } ->  /* snapshot: pinned */
        d_step { ACCESS; missed_bit = false };
#ifndef BUG_MISSED_TWICE
        d_step { ACCESS; t = ow; ow = ow & ~UNBUF };
        if
        :: (t & UNBUF) -> entries++
        :: else -> skip
        fi;
#else
        entries++;
#endif
        unpin(t, last)
    :: else -> skip
    fi
}

proctype collector()
{
    byte t;
    bool last;

    do
    :: d_step { entries > 0 -> entries-- } -> take(t, last)
    :: d_step { missed > 0 -> missed = 0 } -> find_missed(t, last)
    :: d_step { done == 2 && entries == 0 && missed == 0 -> skip } -> break
    od
}

init
{
    atomic {
        run mutator();
        run mutator();
        run collector()
    };
    (_nr_pr == 1);
    assert(entries == 0);
    assert(freed && frees == 1);            /* freed, once: no leak */
}
