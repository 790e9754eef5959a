/*
 * finalize.pml: a Promela model of finalizers and resurrection: step 7 of
 * a collection (runtime/collector.c: finalizers, the re-check of the
 * words, the garbage kept or freed) and a teardown by counting
 * (runtime/object.c, finalize), beside a thread that reaches what the
 * finalizers resurrect.  rcgc.pml has no finalizers; this model is about
 * them alone.  Checked by tests/model/run_model.sh as the ctest tests
 * model.finalize and model.finalize_<bug>.
 *
 * What it checks: no object is freed while a slot that is not itself
 * garbage, or a thread, still holds it; nothing is touched after it is
 * freed; every finalizer runs at most once (FINALIZED); and once the
 * mutator has let go, a last collection frees both objects (nothing kept
 * DYING, nothing leaked).
 *
 * Configuration: two objects, A (0) and B (1), each with one slot, A.s ->
 * B and B.s -> A, and nothing else: a garbage 2-cycle.  Both are merged
 * (every count on the shared word: biased counting's split, the grace
 * period and the owner word are rcgc.pml's subject).  One global slot G,
 * empty at first.  A finalizer does, nondeterministically, nothing,
 * stores its own object in G (a resurrection: rcgc_ref_store, which drops
 * whatever G held), or clears its own slot (rcgc_ref_store NULL: the other
 * member loses a reference).
 *
 * The mutator makes K (default 2) rounds: load G (rcgc_ref_load: a
 * try-increment that refuses DYING and a dead word, and then reads the
 * slot again), and holding what it got, maybe store it in G again, maybe
 * clear G, then drop it.  Then, once the first collection is over, it
 * turns resurrection off and clears G, so that the end state is garbage.
 *
 * -DCHAIN: instead, the mutator holds A, A.s -> B, and B.s is empty: no
 * cycle.  The mutator may put A in G first, and drops its reference after
 * its rounds; A and B die by counting, on the mutator or on the collector
 * (whose unpin may be the last reference), and their finalizers run
 * there (and may resurrect A, or B into G).
 *
 * The collector runs one collection concurrently with the mutator and,
 * once the mutator is done, one more.  A collection: pin and
 * flag each object still there (a try-increment that sets SCAN and clears
 * DIRTY; an object being torn down is skipped, as the registry would);
 * read each member's word and slot (step 4); cyclic counts, black from the
 * externally referenced and from DIRTY or DYING words (steps 4-5); the
 * Delta-test CAS per white member, which sets DYING, a failure un-DYINGs
 * the members of its component that passed (step 6); each passing
 * member's finalizer, unless FINALIZED; if any ran, every passing member's
 * word compared with the one step 4 read, plus DYING, and a component with
 * a changed word kept whole and un-DYINGed; the rest: slots cleared, the
 * references they held dropped, memory freed; survivors unflagged and
 * unpinned (an unpin may be a last reference: a teardown by counting).
 *
 * Teardown by counting (object.c): the thread whose decrement made the
 * word MERGED 0 (not DYING) releases the object: unless FINALIZED, it
 * sets FINALIZED, makes the word MERGED | DYING | 1 (its own reference for
 * the finalizer's duration), runs the finalizer, and drops that reference
 * by a CAS that, if the count stays above zero, clears DYING and keeps that
 * reference, which then goes as any decrement (resurrected: the teardown
 * stops, and starts again, without the finalizer, if that decrement was
 * the last); else the slot is cleared, the reference dropped, the memory
 * freed.  Releases are a list, drained by a loop, as in C.
 *
 * Encoding: sh[o] = count * ONE | MERGED 2 | DYING 8 | SCAN 16 | DIRTY 32,
 * as in include/rcgc/biased.h (QUEUED and IMMORTAL do not occur).  A
 * non-owner increment is a fetch_add, then a fetch_or of DIRTY if the word
 * it replaced had SCAN (two steps, as rcgc__incref_flagged); a decrement
 * is one RMW that carries DIRTY when SCAN is set (the CAS path that a
 * tracked object's decrement takes while the collector holds it).
 *
 * Seeded bugs (-DBUG_...; each is caught):
 *   BUG_NO_RECHECK       the words are not checked again after the
 *                        finalizers: a resurrected cycle is freed while G
 *                        holds it.
 *   BUG_RECHECK_COUNT    the re-check compares the count alone, not the
 *                        whole word: A stores itself in G (+1, DIRTY) and
 *                        B clears its slot to A (-1): A's count reads as
 *                        before, and the pair is freed under G.
 *   BUG_FINALIZE_TWICE   the collector does not test FINALIZED: a
 *                        resurrected cycle's finalizers run again when it
 *                        dies the second time.
 *   BUG_KEEP_DYING       a kept component is not un-DYINGed: its members
 *                        refuse every load and every later pin, and leak.
 */

#ifndef K
#define K 2
#endif

#define NO     2
#define ONE    64
#define MERGED 2
#define DYING  8
#define SCAN   16
#define DIRTY  32
#define CNT(s)   ((s) / ONE)
#define CARRY(s) (((s) & SCAN) -> DIRTY : 0)

int  sh[NO];
byte slot[NO];               /* target + 1, or 0 */
byte G;                      /* the global slot: target + 1, or 0 */
bool fin[NO];                /* FINALIZED */
byte fin_runs[NO];
bool freed[NO];
byte mheld[NO];              /* references the mutator holds */
bool mdone;
bool c1done;                 /* the first collection is over */
bool resurrect_ok = true;    /* finalizers may store into G */

#define ACCESS(o) assert(!freed[o])

/* Freed: no live slot, no thread, may still hold it.  The other object's
   slot counts unless that object is freed or being freed with it (gone). */
inline free_memory(o, gone)
{
    d_step {
        ACCESS(o);
        assert(G != o + 1);
        assert(mheld[o] == 0);
        assert(freed[1 - o] || gone || slot[1 - o] != o + 1);
        freed[o] = true
    }
}

/* A non-owner increment of an object the caller holds a reference to (or
   reached through a slot it is storing from). */
inline incref(o, old)
{
    d_step { ACCESS(o); old = sh[o]; sh[o] = sh[o] + ONE };
    if
    :: (old & SCAN) -> d_step { ACCESS(o); sh[o] = sh[o] | DIRTY }
    :: else -> skip
    fi
}

/* A decrement; a last one (MERGED 0, not DYING) joins the releases. */
inline decref(o, rel)
{
    d_step {
        ACCESS(o);
        assert(CNT(sh[o]) > 0);
        sh[o] = (sh[o] - ONE) | CARRY(sh[o]);
        if
        :: CNT(sh[o]) == 0 && !(sh[o] & DYING) -> rel = rel | (1 << o)
        :: else -> skip
        fi
    }
}

/* rcgc_ref_store(&G, o + 1 or 0): increment the new, exchange, drop the
   old. */
inline store_G(v, old, rel, t)
{
    if
    :: v != 0 -> incref(v - 1, t)
    :: else -> skip
    fi;
    d_step { old = G; G = v };
    if
    :: old != 0 -> decref(old - 1, rel)
    :: else -> skip
    fi
}

/* The finalizer of o: nothing, a resurrection, or its slot cleared. */
inline finalizer(o, rel, old, t)
{
    d_step { ACCESS(o); fin_runs[o]++; assert(fin_runs[o] == 1) };
    if
    :: skip
    :: resurrect_ok -> skip; store_G(o + 1, old, rel, t)
    :: d_step { ACCESS(o); old = slot[o]; slot[o] = 0 };
       if
       :: old != 0 -> decref(old - 1, rel)
       :: else -> skip
       fi
    fi
}

/* The release list's loop (object.c, rcgc__release): teardown by counting. */
inline drain_releases(rel, o, old, t, s)
{
    do
    :: rel == 0 -> break
    :: rel != 0 ->
        o = ((rel & 1) -> 0 : 1);
        rel = rel & ~(1 << o);
        if
        :: !fin[o] ->
            d_step { ACCESS(o); fin[o] = true; sh[o] = MERGED | DYING | ONE };
            finalizer(o, rel, old, t);
            d_step {
                ACCESS(o);
                s = sh[o] - ONE;
                if
                :: CNT(s) > 0 -> s = sh[o] & ~DYING   /* ours stays, for now */
                :: else -> skip
                fi;
                sh[o] = s
            };
            if
            :: !(s & DYING) -> decref(o, rel)      /* ours: at zero, released again */
            :: else -> skip
            fi
        :: else -> s = DYING
        fi;
        if
        :: (s & DYING) ->                   /* dead: slot, then memory */
            d_step { ACCESS(o); old = slot[o]; slot[o] = 0 };
            if
            :: old != 0 -> decref(old - 1, rel)
            :: else -> skip
            fi;
            free_memory(o, false)
        :: else -> skip                     /* resurrected */
        fi
    od;
    skip                                    /* (no break into a d_step) */
}

proctype mutator()
{
    byte k = K, t, v, old, o;
    byte rel = 0;
    int s;
    bool got;

#ifdef CHAIN
    if
    :: skip; store_G(1, old, rel, t)        /* A in G too */
    :: skip
    fi;
    drain_releases(rel, o, old, t, s);
#endif
    do
    :: k > 0 ->
        k--;
        /* rcgc_ref_load(&G): refused (DYING, or dead) -> read the slot again */
        do
        :: d_step { v = G; got = false };
           if
           :: v == 0 -> break
           :: else ->
              d_step {
                  ACCESS(v - 1);
                  if
                  :: !(sh[v - 1] & DYING) && CNT(sh[v - 1]) > 0 ->
                      sh[v - 1] = (sh[v - 1] + ONE) | CARRY(sh[v - 1]);
                      mheld[v - 1]++;
                      got = true
                  :: else -> skip
                  fi
              };
              if
              :: got -> break
              :: else -> skip
              fi
           fi
        od;
        if
        :: got ->
            if
            :: skip; store_G(v, old, rel, t)        /* in G again */
            :: skip; store_G(0, old, rel, t)        /* G cleared */
            :: skip
            fi;
            drain_releases(rel, o, old, t, s);
            d_step { mheld[v - 1]-- };
            decref(v - 1, rel);
            drain_releases(rel, o, old, t, s)
        :: else -> skip
        fi
    :: k == 0 -> break
    od;
#ifdef CHAIN
    skip;
    d_step { mheld[0]-- };                  /* its own reference to A */
    decref(0, rel);
    drain_releases(rel, o, old, t, s);
#endif
    c1done;                                 /* then lets go of all, */
    resurrect_ok = false;                   /* and finalizers resurrect no more */
    store_G(0, old, rel, t);
    drain_releases(rel, o, old, t, s);
    mdone = true
}

/* One collection over the objects still there. */
inline collection()
{
    d_step {
        o = 0;
        do
        :: o < NO ->
            member[o] = false; pass[o] = false; white[o] = false;
            if
            :: !freed[o] && !(sh[o] & DYING) && CNT(sh[o]) > 0 ->
                sh[o] = ((sh[o] + ONE) | SCAN) & ~DIRTY;          /* pin, flag */
                member[o] = true
            :: else -> skip
            fi;
            o++
        :: else -> break
        od
    };
    /* 4. count: each member's word and slot, read once */
    ms[0] = sh[0]; es[0] = slot[0];
    ms[1] = sh[1]; es[1] = slot[1];
    /* 4-5. cyclic counts, scan */
    d_step {
        o = 0;
        do
        :: o < NO ->
            if
            :: member[o] ->
                crc = CNT(ms[o]) - 1;
                if
                :: member[1 - o] && es[1 - o] == o + 1 -> crc--
                :: else -> skip
                fi;
                if
                :: member[o] && es[o] == o + 1 -> crc--
                :: else -> skip
                fi;
                white[o] = (crc <= 0 && !(ms[o] & (DIRTY | DYING)))
            :: else -> skip
            fi;
            o++
        :: else -> break
        od;
        /* black spreads along recorded edges (two objects: twice) */
        o = 0;
        do
        :: o < 2 * NO ->
            if
            :: member[o % NO] && !white[o % NO] && es[o % NO] != 0 &&
               member[es[o % NO] - 1] -> white[es[o % NO] - 1] = false
            :: else -> skip
            fi;
            o++
        :: else -> break
        od;
        /* one component if a white edge joins the two */
        joined = white[0] && white[1] && (es[0] == 2 || es[1] == 1)
    };
    /* 6. the Delta-test, each white member's CAS */
    o = 0;
    do
    :: o < NO ->
        if
        :: white[o] ->
            d_step {
                ACCESS(o);
                if
                :: sh[o] == ms[o] -> sh[o] = sh[o] | DYING; pass[o] = true
                :: else -> pass[o] = false
                fi
            };
            if
            :: !pass[o] && joined && o == 1 && pass[0] ->
                d_step { ACCESS(0); sh[0] = sh[0] & ~DYING; pass[0] = false }
            :: else -> skip
            fi;
            if
            :: !pass[o] && joined && o == 0 -> white[1] = false    /* kept whole */
            :: else -> skip
            fi
        :: else -> skip
        fi;
        o++
    :: else -> break
    od;
    /* 7. finalizers of the passing members, once */
    ran = false;
    o = 0;
    do
    :: o < NO ->
        if
#ifndef BUG_FINALIZE_TWICE
        :: pass[o] && !fin[o] ->
#else
        :: pass[o] ->
#endif
            d_step { ACCESS(o); fin[o] = true };
            finalizer(o, rel, old, t);
            drain_releases(rel, o2, old, t, s);   /* what it dropped, at once */
            ran = true
        :: else -> skip
        fi;
        o++
    :: else -> break
    od;
    /* ... then the words again: a changed one keeps its component */
#ifndef BUG_NO_RECHECK
    if
    :: ran ->
        o = 0;
        do
        :: o < NO ->
            if
#ifndef BUG_RECHECK_COUNT
            :: pass[o] && sh[o] != (ms[o] | DYING) ->
#else
            :: pass[o] && CNT(sh[o]) != CNT(ms[o]) ->
#endif
                keep[o] = true;
                if
                :: joined -> keep[1 - o] = true
                :: else -> skip
                fi
            :: else -> skip
            fi;
            o++
        :: else -> break
        od;
        o = 0;
        do
        :: o < NO ->
            if
            :: keep[o] && pass[o] ->
#ifndef BUG_KEEP_DYING
                d_step { ACCESS(o); sh[o] = sh[o] & ~DYING };
#endif
                pass[o] = false
            :: else -> skip
            fi;
            keep[o] = false;
            o++
        :: else -> break
        od
    :: else -> skip
    fi;
#endif
    /* the passing members' slots cleared, the references dropped ... */
    o = 0;
    do
    :: o < NO ->
        if
        :: pass[o] ->
            d_step { ACCESS(o); old = slot[o]; slot[o] = 0 };
            if
            :: old != 0 -> decref(old - 1, rel)
            :: else -> skip
            fi
        :: else -> skip
        fi;
        o++
    :: else -> break
    od;
    /* ... and their memory freed */
    if
    :: pass[0] -> free_memory(0, pass[1])
    :: else -> skip
    fi;
    if
    :: pass[1] -> free_memory(1, pass[0])
    :: else -> skip
    fi;
    /* 8. survivors: unflag, unpin (perhaps a last reference) */
    o = 0;
    do
    :: o < NO ->
        if
        :: member[o] && !pass[o] ->
            d_step { ACCESS(o); sh[o] = sh[o] & ~(SCAN | DIRTY) };
            decref(o, rel)
        :: else -> skip
        fi;
        o++
    :: else -> break
    od;
    drain_releases(rel, o2, old, t, s)
}

proctype collector()
{
    byte o, o2, old, t, es[NO];
    byte rel = 0;
    int s, ms[NO], crc;
    bool member[NO], white[NO], pass[NO], keep[NO], joined, ran;

    collection();
    c1done = true;
    mdone;
    collection()
}

init
{
    d_step {
#ifndef CHAIN
        sh[0] = MERGED | ONE;     /* B.s -> A */
        sh[1] = MERGED | ONE;     /* A.s -> B */
        slot[0] = 2;
        slot[1] = 1
#else
        sh[0] = MERGED | ONE;     /* the mutator's reference */
        mheld[0] = 1;
        sh[1] = MERGED | ONE;     /* A.s -> B */
        slot[0] = 2
#endif
    };
    atomic {
        run mutator();
        run collector()
    };
    (_nr_pr == 1);
    assert(G == 0);
    assert(freed[0] && freed[1]);             /* nothing kept DYING, nothing leaked */
}
