/*
 * rcgc.pml: a Promela model of rcgc's protocol (issue 4): biased reference
 * counting with merge queues, reference slots with QSBR-deferred
 * reclamation, and the concurrent trial-deletion cycle collector.  Checked
 * by tests/model/run_model.sh (spin -a, cc, ./pan) as the ctest tests
 * model.real and model.<bug> (label model).
 *
 * Configuration
 * =============
 * 2 mutator threads (tids 1 and 2), the collector thread (tid 3), 3 objects
 * (0, 1, 2) with NS = 2 slots each.  Initial heap (built before any thread
 * runs, as if by rcgc_new + rcgc_ref_store):
 *     T1 owns o0 and o1, T2 owns o2;  T1 holds o0 and o1, T2 holds o2;
 *     o0.s0 -> o2 (stored by T1: o2's shared count 1),
 *     o2.s0 -> o0 (stored by T2: o0's shared count 1)   -- a cross-thread cycle.
 * Mutator t makes Kt operations (-DK1, -DK2; both -DK, default 1), each one
 * of the kinds in the OPS mask (default 15: all):
 *     1 rcgc_decref(held), 2 rcgc_ref_load(held.s), 4 rcgc_ref_store(held.s,
 *     held|NULL), 8 rcgc_ref_exchange(held.s, held|NULL),
 *     16 rcgc_weakref_get(w), w the one weak reference, made before any
 *     thread runs, to object WEAK - 1 (-DWEAK=1: o0, 3: o2; 0: none),
 *     32 give a held reference to the other mutator (plain memory, as a
 *     C program may pass a pointer with its reference), until it exits,
 * and may take a safepoint (rcgc_safepoint) between any two operations.
 * Then it drops every reference it holds and detaches (rcgc_thread_detach).
 * The collector runs NCOLL (default 1) collections concurrently with the
 * mutators' operations, each from one nondeterministically chosen candidate
 * root (any object not yet decided dead: an over-approximation of the root
 * buffers); then, once both mutators have detached, one full collection
 * with every remaining object as candidate.  To bound the state space the
 * mutators' exit phase (drop everything, detach) waits, at safepoints, for
 * the concurrent collection to end (-DEXIT_CONCURRENT lifts this: the state
 * space then grows beyond the CI budget).  The other mutator's operations
 * do race a thread's exit, so a non-owner merging for a gone owner is
 * covered, but not concurrently with a collection.
 *
 * Configurations checked in CI (run_model.sh; bitstate, 2^32 bits; the
 * figures are with every decrement by fetch_sub and memory freed at once
 * unless DEFERRED, the earlier ones in parentheses):
 *   real           K1 = K2 = 1, all kinds: ~50 M states (0 errors; ~48 M
 *                  before; before
 *                  merged decrements by fetch_sub, the same configuration
 *                  exhaustively, -DCOLLAPSE: 47,104,210 states, 0 errors)
 *   real_exchange  K1 = 2, K2 = 1, exchanges only: ~93 M states (0 errors;
 *                  ~87 M before;
 *                  before merged decrements by fetch_sub, exhaustively
 *                  86,973,232 states, 0 errors)
 *   weak           K1 = 2, K2 = 1, decrements and weak upgrades (OPS 17), a
 *                  weak reference to o0: ~12 M states (0 errors; to o2,
 *                  -DWEAK=3: ~13 M; K1 = 1, K2 = 2: ~6 M)
 *   weak_all       K1 = K2 = 1, every kind (OPS 31), a weak reference to
 *                  o0: ~60 M states (0 errors; ~57 M before)
 *   real_rounds    K1 = K2 = 1, all kinds, NCOLL = 2: two collections one
 *                  after the other beside the mutators, each from its own
 *                  candidate, the second finding what the first left
 *                  (unflagged survivors, un-DYINGed components, frees whose
 *                  memory waits for a grace period), as a collection's
 *                  rounds do: ~122 M states, hash factor 35 (0 errors;
 *                  ~116 M before)
 *   real_truncate  K1 = K2 = 1, all kinds, -DTRUNCATE: the concurrent
 *                  collection's marking may leave any target it reaches
 *                  unexamined, as a background collection's budget or a
 *                  frozen object does ("Bounded marking", rcgc_freeze): it
 *                  is then outside, its references external; the final
 *                  collection marks everything: ~86 M states, hash
 *                  factor 50 (0 errors; ~83 M before)
 *   owing          K1 = K2 = 1, decrements and stores (OPS 5), -DHEAP_OWING:
 *                  o0.s0's reference to o2 was stored by T2 and T1 holds
 *                  o2 too, both counted in T2's local count, so drops of
 *                  them by T1 and by the collector go below zero (OWING),
 *                  at times two at once: ~62 M states (0 errors)
 *   owing_drops    the same heap, K1 = 2, K2 = 1, decrements only (OPS 1):
 *                  T1 drops o2 and o0 while the collection runs: ~9.3 M
 *                  states (0 errors)
 *   owing_give     (not in CI) the owing heap, K1 = 2, K2 = 1, decrements,
 *                  loads and gifts (OPS 35: a held reference moved to the
 *                  other mutator by plain memory, no count changed): ~63 M
 *                  states in 2 minutes (0 errors); with K1 = K2 = 2, ~294 M
 *                  in 9 minutes (0 errors).  Two mutators cannot make the
 *                  debt litmus's moment (the debtor would have to give),
 *                  so BUG_MERGE_NO_OWNER passes here too.
 *   debt           -DLITMUS_DEBT: three threads and one object, no
 *                  collector (see "rule 2's litmus" at the end): a debt
 *                  lifted by another thread's increment, whose references
 *                  then go back through the owner's local count: ~5.9 k
 *                  states (0 errors)
 *   debt_try       the same litmus with -DLITMUS_TRY: the lifting
 *                  reference taken by try_incref (a slot load's or a weak
 *                  upgrade's CAS) instead of rcgc_incref: ~5.4 k states
 *                  (0 errors)
 * Every seeded bug below is run at the configuration named with it.
 *
 * Encoding (follows include/rcgc/biased.h):
 *   ow[o]   the owner word: tid * 8 | OWNER_SCAN (1); 0 (flags aside) once
 *           merged.  OWNER_UNBUFFERED is not modelled (see "Abstractions").
 *   lc[o]   ref_local.
 *   sh[o]   ref_shared: count * 64 | QUEUED 1 | MERGED 2 | DYING 8 | SCAN 16
 *           | DIRTY 32, the count signed (may be negative before a merge).
 *   slot[o*NS+j]  object id + 1, or 0 for NULL.
 * Every load, store and read-modify-write of a shared word is one Promela
 * step (a d_step); a CAS loop is a load step followed by CAS steps that
 * compare the whole word.  Memory orders are not modelled (sequential
 * consistency): the model checks the protocol's logic; TSan checks orders.
 *
 * Steps and the C functions they stand for
 * ========================================
 *   rcgc_incref        include/rcgc/biased.h rcgc_incref: owner word == tid
 *                      -> local + 1 (relaxed load, relaxed store: two steps
 *                      after the owner-word load); else fetch_add on shared,
 *                      and rcgc__incref_flagged: fetch_or DIRTY if SCAN;
 *                      if the word it replaced was OWING, settle_debt
 *                      (rcgc__settle_debt: the entry's CAS, as owe, then
 *                      queue_to_owner).
 *   rcgc_decref        biased.h rcgc_decref: owner word == tid -> local - 1,
 *                      or rcgc__decref_owner_last at local <= 1; owner word
 *                      tid 0 (merged) -> decref_fetch_sub or the CAS (the
 *                      C code's choice, by UNBUFFERED, is not modelled);
 *                      else (unmerged) decref_fetch_sub.
 *   decref_fetch_sub   biased.h's fetch_sub and rcgc__decref_sub_done: one
 *                      step count - 1, no DIRTY; release iff the word it
 *                      replaced was MERGED count 1 without DYING; owe iff
 *                      it was unmerged, unqueued, count <= 0 (OWING now).
 *   owe                rcgc__decref_sub_done's CAS for an OWING word: unless
 *                      QUEUED or MERGED by now, count + 1 | QUEUED (the
 *                      entry carries the reference), then queue_to_owner.
 *   decref_shared_slow refcount.c rcgc__decref_shared_slow: MERGED -> CAS
 *                      count-1 (| DIRTY if SCAN), release iff the CAS
 *                      produced MERGED 0 without DYING; unmerged count > 0 or
 *                      QUEUED -> CAS count-1; else CAS | QUEUED once, then
 *                      rcgc__queue_to_owner (the entry holds the reference).
 *   queue_to_owner     refcount.c rcgc__make_entry and thread.c
 *                      rcgc__queue_to_owner: DEFERRED (dfr[o]) and the
 *                      owner word read; no owner (a merge has begun): the
 *                      entry's reference goes by fetch_sub, released at a
 *                      merged 1; else under the owner's
 *                      bucket lock (lk[tid]), push on the owner's queue
 *                      (inq[o] = tid), or, the owner gone, merge on its behalf
 *                      (rcgc__merge_counts(h, -1)) and release at 0.
 *   merge_counts       refcount.c rcgc__merge_counts: load local, load shared;
 *                      if SCAN fetch_or DIRTY; fetch_and owner &= flags;
 *                      local := 0; CAS loop publishing MERGED with
 *                      count = shared + local + extra (shared + extra if
 *                      already MERGED), QUEUED cleared, DIRTY if SCAN.
 *   decref_owner_last  refcount.c rcgc__decref_owner_last.
 *   merge_queued       refcount.c rcgc__merge_queued (drain of a queue entry).
 *   try_incref         refcount.c rcgc__try_incref: owner -> rcgc_incref;
 *                      else CAS loop refusing DYING and MERGED with count <= 0;
 *                      the CAS adds DIRTY if SCAN; for an OWING word it
 *                      adds our reference and the entry's and sets QUEUED,
 *                      then queue_to_owner.
 *   ref_load           slot.c rcgc_ref_load: load slot, try_incref; on failure
 *                      re-read the slot: same and DYING -> NULL, else retry.
 *                      (The C code reads NULL there only on the collecting
 *                      thread; elsewhere it yields and retries, which is a
 *                      load issued later: a failed try_incref has no side
 *                      effect, so the NULL here over-approximates it.)
 *   ref_store          slot.c rcgc_ref_store: rcgc_incref(new), exchange the
 *                      slot (old DEFERRED), rcgc_decref(old).
 *   ref_exchange       slot.c rcgc_ref_exchange: barrier(new); load old;
 *                      loop { barrier(old); CAS slot }, old DEFERRED.  barrier =
 *                      load shared, fetch_or DIRTY if SCAN.  Moves
 *                      references, no count.
 *   weak_get           weakref.c rcgc_weakref_get: under the stripe lock
 *                      (wlk), read the referent (wref); NULL if cleared,
 *                      else try_incref; a refusal reads the word and lets the
 *                      lock go: MERGED 0 without DYING -> NULL, else try
 *                      again (DYING: the C code yields first).
 *   WEAK_CLEAR         weakref.c rcgc__weakrefs_clear: under the stripe lock,
 *                      the handle naming o cleared; in release_all before the
 *                      slots (object.c), and in the collector for every freed
 *                      member after the Delta-test, before release_visit.
 *   release/release_all object.c rcgc__release (push on the thread's release
 *                      list; the outermost call drains it: release_slot =
 *                      exchange slot with NULL + rcgc_decref(child), then
 *                      rcgc__dispose -> rcgc__free_memory: deferred).
 *   dispose            object.c rcgc__free_memory: memory RECLAIMED at once,
 *                      unless DEFERRED (or named by a root buffer entry the
 *                      collector has yet to take, cbuf: the entry's consumer
 *                      frees it); then FREED, and reclaimed as soon as every
 *                      thread online at that moment has passed a quiescent
 *                      state or gone offline (epoch.c: the reclaimer's
 *                      synchronize_rcu; eagerly, the worst case).
 *   safepoint          thread.c rcgc_safepoint: rcgc__merge_queue_drain (take
 *                      the queue under the bucket lock, merge each entry),
 *                      then a quiescent state (epoch.c rcgc__epoch_quiescent).
 *   detach             thread.c rcgc_thread_detach / drain_then(leave): drain
 *                      until the queue is empty under the lock, then leave the
 *                      registry (gone) in the same critical section; then
 *                      unregister from the epoch (offline for good).
 *   collect            collector.c collect_once:
 *     take candidate     take_candidates: try_incref (pin), add_member.
 *     add_member         fetch_or owner |= OWNER_SCAN; CAS loop shared :=
 *                        (s | SCAN) & ~DIRTY.
 *     mark               mark_visit: load each member's slots; try_incref
 *                        (pin) before add_member (flag).
 *     grace              rcgc__epoch_synchronize: offline, wait until every
 *                        online mutator passed a quiescent state, online.
 *     count              examine step 4: per member one load of shared, one of
 *                        local, one of each slot (the only reading of slots).
 *     cyclic counts      crc = count (+ local if unmerged) - 1 (pin) - internal
 *                        edges; DYING/QUEUED/OWING/DIRTY members are black;
 *                        black spreads along the recorded edges (steps 4-5).
 *     delta              step 6: per white member in member order CAS
 *                        (word read in step 4 -> word | DYING); a failure
 *                        un-DYINGs its component's earlier members (fetch_and)
 *                        and keeps the component.
 *     free               step 7: release_visit (exchange each slot with NULL;
 *                        drop references leaving the component), dispose.
 *     unflag             unflag_all: fetch_and owner &= ~OWNER_SCAN; fetch_and
 *                        shared &= ~(SCAN | DIRTY); unpin (rcgc_decref).
 *   final collection   rcgc__gc_shutdown_collect / collect_full after the
 *                      mutators are gone: every object is a candidate.
 *
 * Properties (assertions)
 * =======================
 *   A1 no object is released while a thread holds a reference to it, a slot
 *      of any object (for the collector: of any object outside the freed
 *      component) points to it, or a queue entry holds it (ghost reference
 *      counts: hold[t*NO+o], checked where the free is decided: release()
 *      and the collector's decision after the Delta-test).
 *   A2 no object is released twice (dead[o] once).
 *   A3 no thread touches reclaimed memory: every access to an object's
 *      header or slots asserts mem[o] != RECLAIMED (TOUCH), including loads
 *      and barriers that hold no reference and the collector's accesses.
 *   A4 counts never go below zero: a merge computing a negative total and a
 *      decrement of a MERGED count <= 0 are violations (the code's
 *      rcgc__fatal / rcgc_assert "reference count below zero"), as is an
 *      owner's last decrement with local 0.
 *   A5 liveness, bounded: once both mutators are gone (every reference
 *      dropped), one full collection leaves no object alive (every garbage
 *      object, acyclic or cyclic, has been freed).  Invalid end states
 *      (deadlocks, a grace period that never ends) are errors too.
 *   A6 refcount.c's I2: any RMW that reads MERGED finds the owner word
 *      (flags aside) and the local count already 0 (gh-121794).
 *   A7 a weak upgrade never gives the object after some upgrade gave NULL
 *      (NULL means dead, for good: ghost wnull).
 *   A8 a weak upgrade never touches a disposed object (mem[o] == LIVE, not
 *      merely not RECLAIMED): the C code returns a garbage member's memory
 *      at once unless it was ever overwritten out of a slot, so only the
 *      clearing before the dispose keeps an upgrade off it.
 *   A9 a decrement by fetch_sub chosen because the owner word read tid 0
 *      replaces a merged word, or one mid-merge with nothing left to do:
 *      QUEUED, or count >= 1 (refcount.c, "Decrements by fetch_sub").  With
 *      A1-A3 this checks that the missing DIRTY of every decrement by
 *      fetch_sub leaves the Delta-test sound, and A3 that an OWING thread's
 *      CAS never meets reclaimed memory.
 *
 * Abstractions (what is not modelled)
 * ===================================
 *   - Root buffers (BUFFERED, UNBUFFERED, ZOMBIE, rcgc__buffer_root): the
 *     collector picks any not-yet-dead object as candidate root (a superset
 *     of the buffered ones); the buffer entry's role of keeping a zombie's
 *     memory is replaced by picking the candidate while the collector is
 *     online.  The final collection takes every object (as collect_full
 *     would with every decrement buffering its object).
 *   - Weak references beyond one handle made at the start: rcgc_weakref_new
 *     and _free, the handle table, callbacks, the WEAKREFS bit.
 *   - Finalizers, resurrection, IMMORTAL and
 *     saturation, the local-count spill, rcgc_ref_compare_exchange,
 *     rcgc_new after start, blocking regions (a blocked owner is merged for
 *     exactly as a gone one, which is modelled), FROZEN (but -DTRUNCATE
 *     lets marking leave an object unexamined, which is all a frozen
 *     object is to a collection), SAVEALL, the
 *     retry list (a failed component is only re-examined by the final
 *     collection), out-of-memory paths.  (Memory goes back at once unless
 *     DEFERRED, as in the C code; earlier versions of this model let every
 *     free wait for a grace period.)
 *   - Memory orders (see above); spurious CAS failures.
 *
 * Seeded bugs (-DBUG_...; each is caught; run_model.sh prints the trail)
 * ============
 *   BUG_MERGED_FIRST   (K=1) merge_counts publishes MERGED before clearing the
 *                      owner word and local (CPython gh-119999).  Trail
 *                      (16 s): T2 drops o2 (its owner: merged, count 1 from
 *                      o0.s0); T1 stores NULL into o0.s0, so o2 dies and T2
 *                      (releasing it) is to drop o2.s0's reference to o0;
 *                      T1, exiting, drops its last local reference to o0:
 *                      the merge publishes MERGED count 1 with owner T1 and
 *                      local 1 still in place; T2's decrement sees MERGED
 *                      beside them: A6 (I2) fails.  T2 then frees o0 while
 *                      T1 is still to write o0's owner and local: the
 *                      gh-119999 use-after-free shape (memory deferral
 *                      saves published objects only; the stale owner word
 *                      also sends the owner's fast path into a merged one).
 *   BUG_NO_GRACE       (K=1) collect skips the grace period before reading
 *                      counts: an operation that read an unflagged word
 *                      (an owner's fast path, an exchange's barrier) lands
 *                      after the collector's reading; a member is freed
 *                      while a mutator holds it (A1 in decide()).
 *   BUG_PLAIN_FREE     (K=1) rcgc__decref_shared_slow decides the free from a
 *                      plain load after its CAS instead of from the CAS's
 *                      result (Nim RFC #575, PITFALLS 10).  Trail: two
 *                      holders of a MERGED count-2 object both decrement,
 *                      then both load count 0: released twice (A2).
 *   BUG_NO_BARRIER     (K1=2, K2=1, exchanges only) rcgc_ref_exchange without
 *                      the write barrier (PROTOCOL-REVIEW hole 1).  Trail:
 *                      the collector flags o0 and o2 from candidate o0; T2
 *                      exchanges o2.s1 <- o2 (its reference moves into a
 *                      slot), T1 exchanges o0.s0 <- NULL (takes o0.s0's
 *                      reference to o2) and o0.s1 <- o0; no count changes,
 *                      so the readings after the grace period show only
 *                      internal references and the component passes the
 *                      Delta-test while T1 holds o2 (A1 in decide()).
 *   BUG_OWNER_STORE    (K=1) add_member / unflag set and clear OWNER_SCAN with
 *                      a load and a store instead of fetch_or / fetch_and
 *                      (hole 4): the unflag writes the saved tid back over a
 *                      merge's owner := 0; the owner then takes the fast path
 *                      on a merged object whose local is 0 (A4: "local 0 at
 *                      the owner's last decrement"; with more steps, a free
 *                      while held).
 *   BUG_NO_PIN         (K=1) members are flagged without the pin (hole 3): a
 *                      mutator that had not seen SCAN frees a member, its
 *                      memory is reclaimed while the collector is offline in
 *                      the grace period, and the collector then reads it (A3).
 *   BUG_NO_DIRTY_MERGE (K=1) merge_counts does not set DIRTY before touching
 *                      local when SCAN is set (hole 5).  NOT caught: the
 *                      exhaustive search (46 M states) finds no violation,
 *                      and none is expected in this design: every merge that
 *                      can run after the grace period follows a QUEUED CAS
 *                      (SCAN sends the owner's own decrements to the shared
 *                      word), a member read QUEUED is black, and a QUEUED
 *                      CAS after the reading changes the word, which the
 *                      whole-word Delta-test CAS sees (MERGED is never
 *                      cleared, so no ABA).  DIRTY-first is defence in depth
 *                      here; run_model.sh no_dirty_merge expects 0 errors
 *                      and is not a ctest.
 *   BUG_WEAK_PLAIN     (weak: K1 = 2, K2 = 1, OPS 17) rcgc_weakref_get takes a
 *                      plain increment instead of the validated
 *                      try-increment.  Trail: T1 drops o0, T2 drops o2; the
 *                      collector's Delta-test makes the cycle DYING; T1
 *                      upgrades, under the stripe lock, and increments o0
 *                      anyway; the collector, after the lock, clears the
 *                      reference and frees the cycle; T1, dropping o0 once
 *                      its memory is reclaimed, touches reclaimed memory
 *                      (A3).
 *   BUG_WEAK_LATE_CLEAR (weak) the collector clears the weak references to
 *                      the garbage after disposing of it instead of before.
 *                      Trail: T1 drops o0, T2 drops o2; the collector finds
 *                      the cycle, passes the Delta-test and disposes of both;
 *                      T1, holding o1, upgrades the weak reference, which
 *                      still names o0: it touches a disposed object (A8).
 *   BUG_WEAK_NULL_ON_DYING (weak) an upgrade refused for DYING alone says NULL
 *                      (the fifth session's bug, caught by stress_weakref).
 *                      NOT caught: with three objects no member of a
 *                      component can be DYING and then live again (the
 *                      only way into garbage is the weak reference itself,
 *                      and an upgrade before a member's CAS fails that very
 *                      member); SAVEALL and finalizers, the C code's other
 *                      ways, are not modelled.  test_weakref's
 *                      case_dying_not_dead catches it deterministically.
 *                      run_model.sh weak_null_on_dying expects 0 errors and
 *                      is not a ctest.
 *   BUG_NO_DEFER_QUEUE (owing) rcgc__queue_to_owner does not make the object
 *                      DEFERRED (rule 1 of refcount.c's "Decrements by
 *                      fetch_sub").  Trail: two decrements by fetch_sub
 *                      leave o2's word OWING; the first thread to its CAS
 *                      makes the entry, the merge finds the count at zero
 *                      and the object's memory goes back at once; the other
 *                      thread's CAS then reads reclaimed memory (A3).
 *   BUG_OWING_COUNTED  (owing_drops) the collector counts an OWING member's
 *                      word as it reads (rule 3).  Trail: T1's drop of o2 (a
 *                      reference in T2's local count) leaves the word OWING,
 *                      and T1 stops before its CAS; T1 and T2 let go of the
 *                      rest, and the collection reads o2's word as it is:
 *                      o0 and o2, pointing at each other, count as garbage,
 *                      pass the Delta-test and are freed; T1's CAS then
 *                      makes an entry for a freed object, whose memory is
 *                      gone (A3).
 *   BUG_HIDE_DEBT      (debt: -DLITMUS_DEBT) increments neither make an
 *                      OWING word's entry nor wait for it (rule 2).  Trail:
 *                      T1's drop of o2 leaves the word OWING; T3's
 *                      rcgc_incref lifts it to 0 with no entry; T3 hands its
 *                      two references to T2, whose last local drop merges
 *                      at 0 and frees o2 at once (not DEFERRED); T1's CAS
 *                      then reads reclaimed memory (A3).  The main heap's
 *                      configurations do not catch it: there a reference
 *                      taken over the debt never goes back through the
 *                      owner's local count (the collector's pins go back
 *                      by its own decrements, slots make what leaves them
 *                      DEFERRED), hence the litmus.  hide_debt_try
 *                      seeds it in try_incref's CAS (debt_try): T3's
 *                      try-increment lifts the word to 0 with no entry,
 *                      and the same trail ends in A3.
 *   BUG_MERGE_NO_OWNER (debt) an entry whose owner word reads no owner is
 *                      merged by its maker on behalf of tid 0, as the C
 *                      code did until the fifteenth session.  Trail: T1's
 *                      CAS makes the entry; T3's increment finds QUEUED,
 *                      returns and hands its references to T2, whose last
 *                      local drop begins its merge (owner word cleared);
 *                      T1 reads no owner and merges too, beside T2: the
 *                      object is counted twice, T2's merge finds -1 (A4).
 *   Any bug's configuration can be changed with -D on the spin command line.
 *
 * Reachability probes: -DPROBE_OWE fails at the first CAS that makes an
 * OWING word's entry, -DPROBE_OWE_LATE at the first that finds another
 * thread's entry already made (two debts at once, or an increment's:
 * rule 2), -DPROBE_SETTLE at the first increment by fetch_add that makes
 * the entry, -DPROBE_SETTLE_CAS at the first try-increment that does; in
 * the owing
 * configuration both are reached (after 162 and 261 k states), in real
 * only the first (after 31 k).
 */

#ifndef K
#define K 1
#endif
#ifndef K1
#define K1 K            /* T1's operations */
#endif
#ifndef K2
#define K2 K            /* T2's operations */
#endif
#ifndef OPS
#define OPS 15          /* operation kinds: 1 decref, 2 load, 4 store, 8 exchange,
                           16 weak upgrade, 32 give (to the other mutator) */
#endif
#ifndef NCOLL
#define NCOLL 1
#endif
#ifndef WEAK
#define WEAK 0          /* the one weak reference's referent + 1; 0: none */
#endif

#define NO 3            /* objects */
#define NS 2            /* slots per object */
#define NSL 6           /* NO * NS */
#define COLL 3          /* the collector's tid */

/* ref_shared (biased.h RCGC__SHARED_*) */
#define QUEUED  1
#define MERGED  2
#define DYING   8
#define SCAN    16
#define DIRTY   32
#define FLAGS   63
#define ONE     64
/* owner word (biased.h RCGC__OWNER_*): tid * 8 | OWNER_SCAN */
#define O_SCAN  1
#define TIDW(t) ((t) * 8)
#define OWNER_TID(w) ((w) / 8)

#define CNT(s)   (((s) - ((s) & FLAGS)) / ONE)     /* shared_count(), signed */
#define CARRY(s) (((s) & SCAN) -> DIRTY : 0)       /* carry_flags() */
#define BIT(o)   (1 << (o))
/* rcgc__shared_owes (IMMORTAL not modelled): a decrement by fetch_sub went
   below zero and its thread has yet to make the queue entry */
#define OWES(s) (!((s) & (QUEUED | MERGED)) && CNT(s) < 0)
/* try_incref refuses: DYING, or MERGED with count <= 0 */
#define REFUSED(s) (((s) & DYING) || (((s) & MERGED) && CNT(s) <= 0))

/* memory states */
#define LIVE      0
#define FREED     1     /* torn down, waiting for a grace period */
#define RECLAIMED 2

/* fates (collector.c) */
#define F_LIVE  0
#define F_RETRY 1
#define F_FREED 2

int  sh[NO];            /* ref_shared */
byte ow[NO];            /* owner */
byte lc[NO];            /* ref_local */
byte slot[NSL];         /* reference slots: object + 1, 0 = NULL */
byte inq[NO];           /* the merge queue holding o: tid, 0 = none */
byte lk[3];             /* bucket locks, by owner tid (0: tid 0, none found) */
byte gonem;             /* bit t: mutator t left the registry */
byte online;            /* bit t: thread t registered and online */
byte gp_need;           /* the collector's grace period: mutators still to pass */
byte mem[NO];           /* LIVE, FREED, RECLAIMED */
bit  dfr[NO];           /* gc_bits DEFERRED: freed memory waits for a grace period */
byte cbuf;              /* bit o: o is named by a root buffer entry the collector
                           has yet to take (its memory waits for the consumer) */
byte gpw[NO];           /* threads that must pass a quiescent state before reclaim */
/* ghosts */
byte hold[4 * NO];      /* references held by thread t (collector: its pins) */
bit  dead[NO];          /* release decided */
bit  cdone;             /* the collector's concurrent collections are over */
#if (OPS & 32)
byte exiting;           /* bit t: mutator t has left its operations */
#endif
byte wref = WEAK;       /* the weak reference's referent + 1; 0 once cleared */
byte wlk;               /* its stripe lock: the holder's tid, 0 free */
bit  wnull;             /* ghost: an rcgc_weakref_get has returned NULL */

#define TOUCH(o) assert(mem[o] != RECLAIMED)
/* A6 (refcount.c I2, gh-121794): a word that reads MERGED implies the owner
   word (flags aside) and the local count are already 0. */
#define I2(o, s) assert(!((s) & MERGED) || ((ow[o] & ~O_SCAN) == 0 && lc[o] == 0))

/* Dead temporaries back to 0, so that stale values do not multiply states. */
#define RESET_TEMPS \
    d_w = 0; d_l = 0; d_act = 0; d_ok = 0; d_s = 0; d_n = 0; d_c = 0; \
    m_l = 0; m_ok = 0; m_s = 0; m_n = 0; m_c = 0; \
    i_w = 0; i_s = 0; t_ok = 0; t_done = 0; t_s = 0; \
    q_t = 0; q_list = 0; q_o = 0; r_o = 0; r_j = 0; r_c = 0; r_d = 0; \
    l_p = 0; l_q = 0; l_x = 0; l_v = 0; l_d = 0; x_v = 0; x_old = 0; x_ok = 0; b_s = 0; \
    w_o = 0; w_x = 0; w_v = 0; w_s = 0


/* ---- epochs (epoch.c) ------------------------------------------------------ */

/* Thread me passes a quiescent state (rcgc__epoch_quiescent), goes offline or
   unregisters: every grace period waiting for it may end; freed memory whose
   grace period is over is reclaimed at once (the worst case). */
#define QUIESCE_ONE(o) gpw[o] = gpw[o] & ~BIT(me); \
        mem[o] = ((mem[o] == FREED && gpw[o] == 0) -> RECLAIMED : mem[o])
#define QUIESCE  QUIESCE_ONE(0); QUIESCE_ONE(1); QUIESCE_ONE(2); \
        gp_need = gp_need & ~BIT(me)

/* ---- releasing (object.c) -------------------------------------------------- */

/* The free of o is decided (the RMW that produced MERGED 0, or a merge that
   returned 0): A1, A2, then push o on this thread's release list. */
inline release(o)
{
    d_step {
        assert(!dead[o]);                                       /* A2 */
        assert(hold[1*NO+o] == 0 && hold[2*NO+o] == 0 &&
               hold[3*NO+o] == 0);                              /* A1: threads */
        assert(slot[0] != o + 1 && slot[1] != o + 1 && slot[2] != o + 1 &&
               slot[3] != o + 1 && slot[4] != o + 1 && slot[5] != o + 1); /* A1: slots */
        assert(inq[o] == 0);                                    /* A1: queues */
        dead[o] = 1;
        rel = rel | BIT(o)
    }
}

/* rcgc__dispose -> rcgc__free_memory: at once unless DEFERRED (object.c),
   or a root buffer entry still names it (then its consumer frees it: here,
   after a grace period, later still). */
inline dispose(o)
{
    atomic {      /* atomic: spin 6.5 refuses a d_step as the target of a break */
        gpw[o] = online;
        mem[o] = ((online == 0 || (!dfr[o] && !(cbuf & BIT(o)))) -> RECLAIMED : FREED)
    }
}

/* ---- counts (refcount.c, biased.h) ----------------------------------------- */

/* A CAS loop whose new value is a pure function of the word it read is one
   atomic read-modify-write here, taken at its successful CAS (its
   linearization point): the loads before it only choose a retry.  Where the
   code does something between its load and its CAS that another thread can
   see (merge_counts' DIRTY, owner and local writes; the exchange's barrier),
   those are separate steps, and so are the seeded bugs' plain loads. */

/* rcgc__merge_counts(h, extra); the result in m_c. */
inline merge_counts(o, extra)
{
    d_step { TOUCH(o); m_l = lc[o]; m_s = sh[o] }   /* relaxed local, acquire shared:
                                                       only the owner or a locked
                                                       merger writes local (I4) */
#ifndef BUG_NO_DIRTY_MERGE
    if
    :: (m_s & SCAN) -> d_step { TOUCH(o); sh[o] = sh[o] | DIRTY }
    :: else
    fi;
#endif
#ifndef BUG_MERGED_FIRST
    d_step { TOUCH(o); ow[o] = ow[o] & O_SCAN }          /* fetch_and: flags kept */
    d_step { TOUCH(o); lc[o] = 0 }
#endif
    d_step {                                             /* the CAS loop */
        TOUCH(o);
        m_s = sh[o];
        I2(o, m_s);
        if
        :: (m_s & MERGED) -> m_c = CNT(m_s) + extra
        :: else -> m_c = CNT(m_s) + m_l + extra
        fi;
        assert(m_c >= 0);                                /* A4 */
        sh[o] = (m_c * ONE) | ((m_s & FLAGS) & ~QUEUED) | MERGED | CARRY(m_s);
        m_s = 0; m_l = 0
    }
#ifdef BUG_MERGED_FIRST
    d_step { TOUCH(o); ow[o] = ow[o] & O_SCAN }
    d_step { TOUCH(o); lc[o] = 0 }
#endif
}

/* rcgc__queue_to_owner(h, owner_tid(owner)) after this thread's QUEUED CAS. */
inline queue_to_owner(o)
{
#ifndef BUG_NO_DEFER_QUEUE
    d_step { TOUCH(o); dfr[o] = 1; q_t = OWNER_TID(ow[o]) }   /* rcgc__defer_memory */
#else
    d_step { TOUCH(o); q_t = OWNER_TID(ow[o]) }
#endif
    if
#ifndef BUG_MERGE_NO_OWNER
    :: q_t == 0 ->
       /* make_entry: the owner word reads no owner, so a merge under way or
          made counts the entry's reference and clears QUEUED; the entry's
          reference goes by fetch_sub, released at a merged 1 */
       d_step {
           TOUCH(o);
           m_s = sh[o]; sh[o] = m_s - ONE;
           m_c = (((m_s & MERGED) && CNT(m_s) == 1 && !(m_s & DYING)) -> 1 : 0);
           m_s = 0
       }
       if :: m_c == 1 -> release(o) :: else fi;
       m_c = 0
    :: else ->
#else
    :: true ->
#endif
       /* the bucket lock; a push is the whole critical section */
       atomic {
           lk[q_t] == 0 ->
           if
           :: q_t != 0 && !(gonem & BIT(q_t)) -> inq[o] = q_t; q_t = 255
           :: else -> lk[q_t] = me
           fi
       }
       if
       :: q_t == 255 -> skip
       :: else ->
          merge_counts(o, -1);
          lk[q_t] = 0;
          if :: m_c == 0 -> release(o) :: else fi
       fi
    fi
}

/* rcgc__decref_owner_last */
inline decref_owner_last(o)
{
    d_step { TOUCH(o); d_l = lc[o] }
    assert(d_l != 0);                                          /* A4 */
    merge_counts(o, -1);
    if :: m_c == 0 -> release(o) :: else fi
}

/* The non-owner decrement: the inline plain CAS loop of rcgc_decref and
   rcgc__decref_shared_slow's CAS loop, one RMW (for a plain word both
   compute s - ONE).  d_act: 1 release, 2 queue to the owner. */
inline decref_shared(o)
{
    d_step {
        TOUCH(o);
        d_s = sh[o];
        I2(o, d_s);
        d_c = CNT(d_s);
        d_act = 0;
        if
        :: (d_s & MERGED) ->
           assert(d_c > 0);                                 /* A4 */
           sh[o] = (d_s - ONE) | CARRY(d_s);
#ifndef BUG_PLAIN_FREE
           d_act = ((d_c == 1 && !(d_s & DYING)) -> 1 : 0)
#else
           d_act = 3
#endif
        :: !(d_s & MERGED) && (d_c > 0 || (d_s & QUEUED)) ->
           sh[o] = (d_s - ONE) | CARRY(d_s)
        :: else ->
           sh[o] = d_s | QUEUED | CARRY(d_s); d_act = 2
        fi;
        d_s = 0; d_c = 0
    }
#ifdef BUG_PLAIN_FREE
    /* the free decided from a plain load after the CAS */
    if
    :: d_act == 3 ->
       d_step { TOUCH(o); d_act = ((CNT(sh[o]) == 0 && !(sh[o] & DYING)) -> 1 : 0) }
    :: else
    fi;
#endif
    if
    :: d_act == 1 -> release(o)
    :: d_act == 2 -> queue_to_owner(o)
    :: else
    fi
}

/* The inline decrement by fetch_sub (biased.h) and rcgc__decref_sub_done:
   the release at MERGED count 1 without DYING; at an unmerged, unqueued
   count <= 0 the word is OWING and this thread makes the queue entry
   (owe); no DIRTY.  A9: chosen because the owner word read tid 0, it
   replaces a merged word, or one mid-merge with nothing left to do. */
inline decref_fetch_sub(o)
{
    d_step {
        TOUCH(o);
        d_s = sh[o];
        I2(o, d_s);
        sh[o] = d_s - ONE;
        d_c = CNT(d_s);
        assert(OWNER_TID(d_w) != 0 ||
               (d_s & MERGED) || d_c > 0 || (d_s & QUEUED));   /* A9 */
        assert(!(d_s & MERGED) || d_c > 0);                    /* A4 */
        if
        :: (d_s & MERGED) && d_c == 1 && !(d_s & DYING) -> d_act = 1
        :: !(d_s & (MERGED | QUEUED)) && d_c <= 0 -> d_act = 2
        :: else -> d_act = 0
        fi;
        d_s = 0; d_c = 0
    }
    if
    :: d_act == 1 -> release(o)
    :: d_act == 2 -> owe(o)
    :: else
    fi
}

/* rcgc__decref_sub_done's CAS loop for an OWING word, at its successful
   CAS: unless QUEUED or MERGED by now, count + 1 and QUEUED (the entry
   carries the reference: I3), then queue_to_owner.  Its first access may
   come after another thread's entry was merged and the object released:
   A3 checks that the memory is still there. */
inline owe(o)
{
    d_step {
        TOUCH(o);
        d_s = sh[o];
        I2(o, d_s);
        if
        :: (d_s & (QUEUED | MERGED)) -> d_act = 0
        :: else -> sh[o] = (d_s + ONE) | QUEUED | CARRY(d_s); d_act = 2
        fi;
#ifdef PROBE_OWE
        assert(d_act != 2);
#endif
#ifdef PROBE_OWE_LATE
        assert(d_act != 0);
#endif
        d_s = 0
    }
    if :: d_act == 2 -> queue_to_owner(o) :: else fi
}

/* rcgc_decref(o): drops one reference this thread holds (the ghost count
   goes down in the first step, the relaxed load of the owner word). */
inline rcgc_decref(o)
{
    if
    :: me == COLL -> d_step { hold[me*NO+o]--; TOUCH(o); d_w = OWNER_TID(ow[o]) * 8 }
                                          /* the collector owns nothing; tid 0: merged */
    :: else -> d_step { hold[me*NO+o]--; TOUCH(o); d_w = ow[o] }
    fi;
    if
    :: d_w == TIDW(me) ->
       d_step { TOUCH(o); d_l = lc[o]; if :: d_l > 1 -> lc[o] = d_l - 1 :: else fi }
       if :: d_l > 1 :: else -> decref_owner_last(o) fi
    :: else ->
       if
       :: OWNER_TID(d_w) == 0 ->
          /* merged: the CAS for an object to be buffered (UNBUFFERED, not
             modelled), else fetch_sub: either may run */
          if
          :: decref_shared(o)
          :: decref_fetch_sub(o)
          fi
       :: else -> decref_fetch_sub(o)
       fi
    fi
}

/* rcgc__settle_debt: after a fetch_add that lifted an OWING word, the
   entry's CAS as the debtor's own (owe): unless QUEUED or MERGED by now,
   count + 1 | QUEUED, then queue_to_owner.  The incrementing thread holds
   its new reference throughout. */
inline settle_debt(o)
{
    d_step {
        TOUCH(o);
        i_s = sh[o];
        I2(o, i_s);
        if
        :: (i_s & (QUEUED | MERGED)) -> i_w = 0
        :: else -> sh[o] = (i_s + ONE) | QUEUED | CARRY(i_s); i_w = 1
        fi;
#ifdef PROBE_SETTLE
        assert(i_w != 1);
#endif
        i_s = 0
    }
    if :: i_w == 1 -> queue_to_owner(o) :: else fi;
    i_w = 0
}

/* rcgc_incref(o): the caller holds a reference; the new one is counted in
   the ghost at once. */
inline rcgc_incref(o)
{
    d_step { hold[me*NO+o]++; TOUCH(o); i_w = ow[o] }
    if
    :: i_w == TIDW(me) -> d_step { TOUCH(o); lc[o] = lc[o] + 1 }
    :: else ->
       d_step { TOUCH(o); i_s = sh[o]; sh[o] = i_s + ONE }
       if
       :: (i_s & SCAN) -> d_step { TOUCH(o); sh[o] = sh[o] | DIRTY }   /* rcgc__incref_flagged */
       :: else
       fi;
#ifndef BUG_HIDE_DEBT
       /* rcgc__settle_debt: we lifted an OWING word; we make its entry */
       if :: OWES(i_s) -> settle_debt(o) :: else fi
#endif
    fi
}

/* rcgc__try_incref(h); the result in t_ok. */
inline try_incref(o)
{
    if
    :: me == COLL -> i_w = 0     /* the collector owns nothing: no owner check */
    :: else -> d_step { TOUCH(o); i_w = ow[o] }
    fi;
    if
    :: i_w == TIDW(me) -> rcgc_incref(o); t_ok = 1
    :: else ->
       d_step {                                    /* the CAS loop */
           TOUCH(o);
           t_s = sh[o];
           I2(o, t_s);
           if
           :: REFUSED(t_s) -> t_ok = 0
#ifndef BUG_HIDE_DEBT
           :: !REFUSED(t_s) && OWES(t_s) ->
              /* our reference and the entry's in one CAS */
              sh[o] = (t_s + 2 * ONE) | QUEUED | CARRY(t_s); hold[me*NO+o]++; t_ok = 2;
#ifdef PROBE_SETTLE_CAS
              assert(0);
#endif
#endif
           :: else -> sh[o] = (t_s + ONE) | CARRY(t_s); hold[me*NO+o]++; t_ok = 1
           fi;
           t_s = 0
       }
       if :: t_ok == 2 -> queue_to_owner(o); t_ok = 1 :: else fi
    fi
}

/* rcgc__weakrefs_clear(o): under the stripe lock, the handle naming o is
   cleared (one step: the whole critical section). */
#define WEAK_CLEAR(o) atomic { wlk == 0 -> if :: wref == (o) + 1 -> wref = 0 :: else fi }

/* The outermost rcgc__release drains the release list: release_slot for each
   slot (exchange with NULL, rcgc_decref the child), then rcgc__dispose. */
inline release_all()
{
    do
    :: rel != 0 ->
       d_step {
           if
           :: (rel & 1) -> r_o = 0
           :: else -> if :: (rel & 2) -> r_o = 1 :: else -> r_o = 2 fi
           fi;
           rel = rel & ~BIT(r_o);
           r_j = 0
       }
#if WEAK
       WEAK_CLEAR(r_o);          /* rcgc__weakrefs_clear, before anything else */
#endif
       do
       :: r_j < NS ->
          d_step {
              TOUCH(r_o);
              r_c = slot[r_o*NS+r_j]; slot[r_o*NS+r_j] = 0;
              if :: r_c != 0 -> r_c = r_c - 1; hold[me*NO+r_c]++; r_d = 1 :: else -> r_d = 0 fi
          }
          if :: r_d -> rcgc_decref(r_c) :: else fi;
          r_j++
       :: else -> break
       od;
       dispose(r_o)
    :: else -> break
    od
}

/* ---- slots (slot.c) -------------------------------------------------------- */

/* rcgc_ref_load(&o.s[j]) for a container o this thread holds; the loaded
   object + 1 in l_v (0: NULL). */
inline ref_load(o, j)
{
    do
    :: d_step { TOUCH(o); l_p = slot[o*NS+j] }
       if
       :: l_p == 0 -> l_v = 0; break
       :: else ->
          l_x = l_p - 1;
          try_incref(l_x);
          if
          :: t_ok -> l_v = l_p; break
          :: else ->
             d_step { TOUCH(o); l_q = slot[o*NS+j] }
             if
             :: l_q == l_p ->
                d_step { TOUCH(l_x); l_d = sh[l_x] & DYING }
                if :: l_d -> l_v = 0; break :: else fi
             :: else
             fi
          fi
       fi
    od;
    l_x = 0; l_q = 0; l_d = 0; l_p = 0
}

/* rcgc_ref_store(&o.s[j], v - 1): v is 0 (NULL) or an object + 1 this
   thread holds (its reference stays with the thread). */
inline ref_store(o, j, v)
{
    if :: v != 0 -> x_v = v - 1; rcgc_incref(x_v) :: else fi;
    d_step {
        TOUCH(o);
        x_old = slot[o*NS+j]; slot[o*NS+j] = v;
        if :: v != 0 -> hold[me*NO+v-1]-- :: else fi;        /* now the slot's */
        if :: x_old != 0 -> hold[me*NO+x_old-1]++; dfr[x_old-1] = 1 :: else fi
                                              /* now ours to drop; DEFERRED */
    }
    if :: x_old != 0 -> x_v = x_old - 1; rcgc_decref(x_v) :: else fi;
    x_v = 0; x_old = 0
}

/* barrier() of slot.c */
inline barrier(p)
{
    d_step { TOUCH(p); b_s = sh[p] & SCAN }
    if :: b_s -> d_step { TOUCH(p); sh[p] = sh[p] | DIRTY } :: else fi;
    b_s = 0
}

/* rcgc_ref_exchange(&o.s[j], v - 1): v's reference moves into the slot, the
   old value's reference to this thread. */
inline ref_exchange(o, j, v)
{
#ifndef BUG_NO_BARRIER
    if :: v != 0 -> x_v = v - 1; barrier(x_v) :: else fi;
#endif
    d_step { TOUCH(o); x_old = slot[o*NS+j] }
    do
    :: 
#ifndef BUG_NO_BARRIER
       if :: x_old != 0 -> x_v = x_old - 1; barrier(x_v) :: else fi;
#endif
       d_step {
           TOUCH(o);
           if
           :: slot[o*NS+j] == x_old ->
              slot[o*NS+j] = v; x_ok = 1;
              if :: v != 0 -> hold[me*NO+v-1]-- :: else fi;
              if :: x_old != 0 -> hold[me*NO+x_old-1]++; dfr[x_old-1] = 1 :: else fi
           :: else -> x_old = slot[o*NS+j]; x_ok = 0
           fi
       }
       if :: x_ok -> break :: else fi
    od;
    x_v = 0; x_old = 0; x_ok = 0
}

/* ---- weak references (weakref.c) ---------------------------------------------- */

/* rcgc_weakref_get: under the stripe lock, the referent is read and, if it is
   still named, try-incremented; the result (object + 1, 0: NULL) in w_v.  A
   refusal reads the word and lets the lock go: merged at zero and not DYING
   is dead (NULL); DYING alone is not an answer yet (the C code yields and
   tries again, as here); neither, try again.  A7: once some upgrade said
   NULL, none gives the object. */
inline weak_get()
{
    do
    :: atomic { wlk == 0 -> wlk = me; w_o = wref }
       if
       :: w_o == 0 -> wlk = 0; w_v = 0; break
       :: else ->
          w_x = w_o - 1;
          assert(mem[w_x] == LIVE);                             /* A8 */
#ifndef BUG_WEAK_PLAIN
          try_incref(w_x);
#else
          rcgc_incref(w_x); t_ok = 1;          /* a plain increment: no refusal */
#endif
          if
          :: t_ok -> wlk = 0; w_v = w_o; break
          :: else ->
             d_step { TOUCH(w_x); w_s = sh[w_x]; wlk = 0 }
             if
             :: !(w_s & DYING) && (w_s & MERGED) && CNT(w_s) <= 0 -> w_v = 0; break
#ifdef BUG_WEAK_NULL_ON_DYING
             :: (w_s & DYING) -> w_v = 0; break  /* the fifth session's bug */
#endif
             :: else -> skip
             fi
          fi
       fi
    od;
    if
    :: w_v == 0 -> wnull = 1
    :: else -> assert(!wnull)                                   /* A7 */
    fi
}

/* ---- threads (thread.c) ------------------------------------------------------ */

/* Takes this thread's queue under its bucket lock into q_list; the entries'
   references are now in this thread's hands (ghost). */
#define TAKE_ONE(o) if :: inq[o] == me -> inq[o] = 0; q_list = q_list | BIT(o); \
                                          hold[me*NO+o]++ :: else fi
#define TAKE_QUEUE  q_list = 0; TAKE_ONE(0); TAKE_ONE(1); TAKE_ONE(2)

/* rcgc__merge_queued for each taken entry */
inline merge_list()
{
    q_o = 0;
    do
    :: q_o < NO ->
       if
       :: (q_list & BIT(q_o)) ->
          d_step { hold[me*NO+q_o]-- }           /* the entry's reference goes */
          merge_counts(q_o, -1);
          if :: m_c == 0 -> release(q_o) :: else fi
       :: else
       fi;
       q_o++
    :: else -> break
    od;
    q_list = 0; q_o = 0
}

/* rcgc_safepoint: rcgc__merge_queue_drain, then a quiescent state. */
inline safepoint()
{
    /* the bucket lock is held only to take the queue: one step */
    atomic {
        lk[me] == 0 -> TAKE_QUEUE;
        if :: q_list == 0 -> QUIESCE :: else fi    /* nothing to merge: quiescent now */
    }
    if
    :: q_list != 0 ->
       merge_list();
       release_all();
       atomic { QUIESCE; RESET_TEMPS }
    :: else
    fi
}

/* rcgc_thread_detach: drain_then(leave), then rcgc__epoch_unregister. */
inline detach()
{
    do
    :: atomic {
           lk[me] == 0 -> TAKE_QUEUE;
           if :: q_list == 0 -> gonem = gonem | BIT(me) :: else fi
       }
       if
       :: q_list == 0 -> break
       :: else -> merge_list(); release_all(); atomic { RESET_TEMPS }
       fi
    od;
    atomic { online = online & ~BIT(me); QUIESCE }
}

#define TEMPS \
    byte d_w, d_l, d_act; bit d_ok; int d_s, d_n, d_c; \
    byte m_l; bit m_ok; int m_s, m_n, m_c; \
    byte i_w; int i_s; byte t_ok; bit t_done; int t_s; \
    byte q_t, q_list, q_o; \
    byte rel, r_o, r_j, r_c; bit r_d; \
    byte l_p, l_q, l_x, l_v; int l_d; \
    byte x_v, x_old; bit x_ok; int b_s; \
    byte w_o, w_x, w_v; int w_s

/* ---- a mutator ----------------------------------------------------------------- */

#define HELD(o) (hold[me*NO+(o)] > 0)
#if NS == 2
#define PICKJ if :: j = 0 :: j = 1 fi
#else
#define PICKJ j = 0
#endif
#define PICKV if :: v = 0 :: HELD(0) -> v = 1 :: HELD(1) -> v = 2 :: HELD(2) -> v = 3 fi

proctype mutator(byte me)
{
    TEMPS;
    byte ops, o, j, v, op, kops = (me == 1 -> K1 : K2);

    do
    :: ops < kops && (HELD(0) || HELD(1) || HELD(2)) ->
       atomic {                 /* choose an operation and its operands */
           if
           :: HELD(0) -> o = 0
           :: HELD(1) -> o = 1
           :: HELD(2) -> o = 2
           fi;
           if
           :: (OPS & 1) -> op = 0
           :: (OPS & 2) -> op = 1; PICKJ
           :: (OPS & 4) -> op = 2; PICKJ; PICKV
           :: (OPS & 8) -> op = 3; PICKJ; PICKV
           :: (OPS & 16) -> op = 4
#if (OPS & 32)
           :: !(exiting & BIT(3 - me)) ->
              /* give: one reference to the other mutator, by plain memory
                 (no count changes, no slot) */
              op = 5; hold[me*NO+o]--; hold[(3-me)*NO+o]++
#endif
           fi
       }
       if
       :: op == 5 -> skip
       :: op == 0 -> rcgc_decref(o)
       :: op == 1 -> ref_load(o, j); l_v = 0
       :: op == 2 -> ref_store(o, j, v)
       :: op == 3 -> ref_exchange(o, j, v)
       :: op == 4 -> weak_get(); w_v = 0
       fi;
       release_all();
       atomic { ops++; o = 0; j = 0; v = 0; op = 0; RESET_TEMPS }
    :: safepoint()
    :: ops == kops || !(HELD(0) || HELD(1) || HELD(2)) -> break
    od;
#if (OPS & 32)
    exiting = exiting | BIT(me);        /* no more gifts to us */
#endif
    /* exit: drop every reference, then detach */
#ifndef EXIT_CONCURRENT
    /* the exit phase waits, at safepoints, for the concurrent collections
       to end (a bound on the state space; -DEXIT_CONCURRENT lifts it) */
    do
    :: cdone -> break
    :: !cdone -> safepoint()
    od;
#endif
    o = 0;
    do
    :: o < NO ->
       if
       :: HELD(o) -> rcgc_decref(o); release_all(); atomic { RESET_TEMPS }
       :: else -> o++
       fi
    :: else -> break
    od;
    detach()
}

/* ---- the collector (collector.c) --------------------------------------------------- */

/* take_candidates / mark_visit: pin, then add_member (flag). */
inline take(c)
{
    if
    :: !(c_mb & BIT(c)) ->
#ifndef BUG_NO_PIN
       try_incref(c);
#else
       d_step { TOUCH(c); t_s = sh[c]; t_ok = (REFUSED(t_s) -> 0 : 1) }
#endif
       if
       :: t_ok ->
#ifndef BUG_OWNER_STORE
          d_step {
              c_ord[c_nm] = c; c_nm++; c_mb = c_mb | BIT(c);
              TOUCH(c); ow[c] = ow[c] | O_SCAN                        /* fetch_or */
          }
#else
          d_step { c_ord[c_nm] = c; c_nm++; c_mb = c_mb | BIT(c); TOUCH(c); c_sow[c] = ow[c] }
          d_step { TOUCH(c); ow[c] = c_sow[c] | O_SCAN }
#endif
          d_step { TOUCH(c); sh[c] = (sh[c] | SCAN) & ~DIRTY }       /* CAS loop */
       :: else
       fi
    :: else
    fi
}

#ifndef BUG_OWING_COUNTED
#define OWES_COUNTED(s) OWES(s)         /* an OWING member is external */
#else
#define OWES_COUNTED(s) 0
#endif
#ifdef BUG_NO_PIN
#define PIN 0
#else
#define PIN 1
#endif
#define BIG 100

/* examine steps 4-5 on the recorded readings: cyclic counts, colours,
   white components (smallest member id as label). */
#define CRC_ONE(m) \
    if \
    :: (c_mb & BIT(m)) -> \
       if \
       :: (c_ss[m] & DYING) -> c_crc[m] = BIG \
       :: !(c_ss[m] & DYING) && ((c_ss[m] & (QUEUED | DIRTY)) || OWES_COUNTED(c_ss[m])) -> \
          c_crc[m] = BIG; c_fate[m] = F_RETRY \
       :: else -> c_crc[m] = CNT(c_ss[m]) + ((c_ss[m] & MERGED) -> 0 : c_ll[m]) - PIN \
       fi \
    :: else \
    fi

inline compute()
{
    atomic {      /* deterministic; atomic, not d_step: spin refuses a jump into a d_step with loops */
        c_fate[0] = F_LIVE; c_fate[1] = F_LIVE; c_fate[2] = F_LIVE;
        CRC_ONE(0); CRC_ONE(1); CRC_ONE(2);
        for (c_k : 0 .. NSL-1) {
            if
            :: (c_mb & BIT(c_k / NS)) && c_ed[c_k] != 0 && (c_mb & BIT(c_ed[c_k] - 1)) ->
               c_crc[c_ed[c_k] - 1] = c_crc[c_ed[c_k] - 1] - 1
            :: else
            fi
        };
        c_black = 0;
        for (c_k : 0 .. NO-1) {
            if :: (c_mb & BIT(c_k)) && c_crc[c_k] > 0 -> c_black = c_black | BIT(c_k) :: else fi
        };
        for (c_i : 0 .. NO-1) {          /* black spreads along recorded edges */
            for (c_k : 0 .. NSL-1) {
                if
                :: (c_black & BIT(c_k / NS)) && c_ed[c_k] != 0 && (c_mb & BIT(c_ed[c_k] - 1)) ->
                   c_black = c_black | BIT(c_ed[c_k] - 1)
                :: else
                fi
            }
        };
        c_white = c_mb & ~c_black;
        c_comp[0] = 0; c_comp[1] = 1; c_comp[2] = 2;
        for (c_i : 0 .. NO-1) {          /* union of white-white edges */
            for (c_k : 0 .. NSL-1) {
                if
                :: (c_white & BIT(c_k / NS)) && c_ed[c_k] != 0 && (c_white & BIT(c_ed[c_k] - 1)) ->
                   c_x = c_comp[c_k / NS];
                   c_y = c_comp[c_ed[c_k] - 1];
                   if :: c_y < c_x -> c_x = c_y :: else fi;
                   for (c_j : 0 .. NO-1) {
                       if
                       :: c_comp[c_j] == c_comp[c_k / NS] || c_comp[c_j] == c_comp[c_ed[c_k] - 1] ->
                          c_comp[c_j] = c_x
                       :: else
                       fi
                   }
                :: else
                fi
            }
        };
        for (c_k : 0 .. NO-1) {
            if :: (c_white & BIT(c_k)) -> c_fate[c_k] = F_FREED :: else fi
        };
        c_i = 0; c_j = 0; c_k = 0; c_x = 0; c_y = 0
    }
}

/* The free is decided for every F_FREED member: A1 (no thread but the
   collector's pin, no slot outside the component, no queue entry), A2. */
#define FREED_SET(x) (c_fate[x] == F_FREED)
inline decide()
{
    atomic {
        c_j = 0;
        for (c_k : 0 .. NO-1) {
            if
            :: FREED_SET(c_k) ->
               assert(!dead[c_k]);
               assert(hold[1*NO+c_k] == 0 && hold[2*NO+c_k] == 0);
               assert(inq[c_k] == 0);
               for (c_j : 0 .. NSL-1) {
                   assert(slot[c_j] != c_k + 1 ||
                          (FREED_SET(c_j / NS) && c_comp[c_j / NS] == c_comp[c_k]))
               };
               dead[c_k] = 1;
               hold[COLL*NO+c_k] = 0          /* the pin dies with it */
            :: else
            fi
        };
        c_j = 0; c_k = 0
    }
}

/* One collection from the candidates in c_cand (a bitmask). */
inline collect()
{
    c_mb = 0; c_nm = 0;
    /* 1. roots */
    c_i = 0;
    do
    :: c_i < NO -> if :: (c_cand & BIT(c_i)) -> c_c = c_i; take(c_c) :: else fi; c_i++
    :: else -> break
    od;
    cbuf = 0;          /* the entries are consumed */
    /* 2. mark */
    c_i = 0;
    do
    :: c_i < c_nm ->
       c_m = c_ord[c_i]; c_j = 0;
       do
       :: c_j < NS ->
          d_step { TOUCH(c_m); c_p = slot[c_m*NS+c_j] }
#ifndef TRUNCATE
          if :: c_p != 0 -> c_c = c_p - 1; take(c_c) :: else fi;
#else
          /* The target may be left unexamined: the background budget ran
             out, or it is frozen (not in the final collection). */
          if
          :: c_p != 0 -> c_c = c_p - 1; take(c_c)
          :: c_p != 0 && !c_last -> skip
          :: else
          fi;
#endif
          c_j++
       :: else -> break
       od;
       c_i++
    :: else -> break
    od;
    if
    :: c_nm > 0 ->
#ifndef BUG_NO_GRACE
       /* 3. grace: rcgc__epoch_synchronize (offline for the wait) */
       d_step { online = online & ~BIT(me); QUIESCE; gp_need = online & 6 }
       gp_need == 0;
       online = online | BIT(me);
#endif
       /* 4. count: one reading of each member's counts and slots */
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          d_step { TOUCH(c_m); c_ss[c_m] = sh[c_m] }
          d_step { TOUCH(c_m); c_ll[c_m] = lc[c_m] }
          d_step { TOUCH(c_m); c_ed[c_m*NS] = slot[c_m*NS] }
          d_step { TOUCH(c_m); c_ed[c_m*NS+1] = slot[c_m*NS+1] }
          c_i++
       :: else -> break
       od;
       /* 5. scan */
       compute();
       /* 6. delta, per component, in member order */
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          if
          :: c_fate[c_m] == F_FREED ->
             d_step {
                 TOUCH(c_m);
                 if
                 :: sh[c_m] == c_ss[c_m] -> sh[c_m] = c_ss[c_m] | DYING; c_ok = 1
                 :: else -> c_ok = 0
                 fi
             }
             if
             :: !c_ok ->
                c_k = 0;
                do
                :: c_k < c_nm ->
                   c_o = c_ord[c_k];
                   if
                   :: (c_white & BIT(c_o)) && c_comp[c_o] == c_comp[c_m] ->
                      if
                      :: c_fate[c_o] == F_FREED && c_k < c_i ->
                         d_step { TOUCH(c_o); sh[c_o] = sh[c_o] & ~DYING }
                      :: else
                      fi;
                      c_fate[c_o] = F_RETRY
                   :: else
                   fi;
                   c_k++
                :: else -> break
                od;
                c_k = 0; c_o = 0
             :: else
             fi
          :: else
          fi;
          c_i++
       :: else -> break
       od;
       decide();
#if WEAK && !defined(BUG_WEAK_LATE_CLEAR)
       /* 7. free: the weak references to the garbage cleared first */
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          if :: c_fate[c_m] == F_FREED -> WEAK_CLEAR(c_m) :: else fi;
          c_i++
       :: else -> break
       od;
#endif
       /* release_visit on each slot, then dispose */
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          if
          :: c_fate[c_m] == F_FREED ->
             c_j = 0;
             do
             :: c_j < NS ->
                d_step {
                    TOUCH(c_m);
                    c_p = slot[c_m*NS+c_j]; slot[c_m*NS+c_j] = 0;
                    if
                    :: c_p != 0 && !(FREED_SET(c_p - 1) && c_comp[c_p - 1] == c_comp[c_m]) ->
                       c_c = c_p - 1; hold[COLL*NO+c_c]++; c_ok = 1
                    :: else -> c_ok = 0
                    fi
                }
                if :: c_ok -> rcgc_decref(c_c) :: else fi;
                c_j++
             :: else -> break
             od
          :: else
          fi;
          c_i++
       :: else -> break
       od;
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          if :: c_fate[c_m] == F_FREED -> dispose(c_m) :: else fi;
          c_i++
       :: else -> break
       od;
#if WEAK && defined(BUG_WEAK_LATE_CLEAR)
       /* the weak references cleared only after the memory went */
       c_i = 0;
       do
       :: c_i < c_nm ->
          c_m = c_ord[c_i];
          if :: c_fate[c_m] == F_FREED -> WEAK_CLEAR(c_m) :: else fi;
          c_i++
       :: else -> break
       od;
#endif
       release_all()
    :: else
    fi;
    /* 8. unflag and unpin the survivors */
    c_i = 0;
    do
    :: c_i < c_nm ->
       c_m = c_ord[c_i];
       if
       :: c_fate[c_m] != F_FREED ->
#ifndef BUG_OWNER_STORE
          d_step { TOUCH(c_m); ow[c_m] = ow[c_m] & ~O_SCAN }      /* fetch_and */
#else
          d_step { TOUCH(c_m); ow[c_m] = c_sow[c_m] & ~O_SCAN }   /* writes the saved word back */
#endif
          d_step { TOUCH(c_m); sh[c_m] = sh[c_m] & ~(SCAN | DIRTY) }
#ifndef BUG_NO_PIN
          rcgc_decref(c_m);                                      /* unpin */
          release_all()
#endif
       :: else
       fi;
       c_i++
    :: else -> break
    od;
    /* clean the table for the state vector */
    atomic {
        c_i = 0;
        for (c_k : 0 .. NO-1) {
            c_ord[c_k] = 0; c_ss[c_k] = 0; c_ll[c_k] = 0; c_crc[c_k] = 0;
            c_fate[c_k] = 0; c_comp[c_k] = 0; c_sow[c_k] = 0
        };
        for (c_k : 0 .. NSL-1) { c_ed[c_k] = 0 };
        c_k = 0; c_i = 0; c_j = 0; c_m = 0; c_p = 0; c_c = 0; c_s = 0; c_ok = 0;
        c_mb = 0; c_nm = 0; c_black = 0; c_white = 0; c_cand = 0;
        RESET_TEMPS
    }
}

proctype collector()
{
    TEMPS;
    byte me = COLL;
    byte c_ord[NO], c_nm, c_mb, c_i, c_j, c_k, c_m, c_o, c_p, c_c, c_x, c_y;
    byte c_cand, c_black, c_white, c_n;
    bit  c_last;                   /* the final collection */
    int  c_s, c_ss[NO], c_crc[NO];
    byte c_ll[NO], c_ed[NSL], c_fate[NO], c_comp[NO], c_sow[NO];
    bit  c_ok;

    do
    :: c_n < NCOLL ->
       /* rcgc_blocking_end: online; a candidate from the buffers */
       atomic {
           online = online | BIT(me);
           if
           :: !dead[0] -> c_cand = BIT(0)
           :: !dead[1] -> c_cand = BIT(1)
           :: !dead[2] -> c_cand = BIT(2)
           :: else -> c_cand = 0
           fi;
           cbuf = c_cand
       }
       collect();
       /* rcgc_safepoint, then rcgc_blocking_begin: offline while idle */
       d_step { QUIESCE; online = online & ~BIT(me) }
       c_n++
    :: c_n == NCOLL -> break
#ifdef EXIT_CONCURRENT
    :: gonem == 6 -> break
#endif
    od;
    cdone = 1;
    gonem == 6;
    /* the mutators are gone: a full collection of everything left */
    atomic {
        online = online | BIT(me);
        c_cand = (dead[0] -> 0 : 1) | (dead[1] -> 0 : 2) | (dead[2] -> 0 : 4);
        cbuf = c_cand;
        c_last = 1
    }
    collect();
    d_step { QUIESCE; online = online & ~BIT(me) }
    /* A5: no reference is left anywhere, so nothing may be left alive */
    assert(dead[0] && dead[1] && dead[2])
}

#ifdef LITMUS_DEBT
/* ---- rule 2's litmus (run_model.sh debt; hide_debt, merge_no_owner) ----------

   refcount.c, "Decrements by fetch_sub", rule 2: an increment that lifts
   an OWING word makes the queue entry.  T2 owns o2, with three references
   in its local count: its own, T1's and T3's (tid 3: no collector runs
   here).  T1 drops its reference by fetch_sub, below zero (OWING), and
   makes the entry at its later CAS (owe).  T3 takes a second reference by
   rcgc_incref and hands both of its references to T2 by plain memory (a
   message, as a C program may: no slot, so nothing is made DEFERRED); T2
   drops the three it holds, its safepoints free to come anywhere.  Had
   T3's increment lifted T1's debt without the entry, T2's last drop would
   merge the count at 0 and free o2's memory at once, while T1 has yet to
   make its CAS on o2's word (A3).  And when T1's CAS comes first, T3
   returns at once, and T2's last drop may begin its merge before T1
   reads the owner word for its entry: T1 finds no owner
   (BUG_MERGE_NO_OWNER).  Objects o0 and o1 take no part. */
bit handed;                     /* T3 -> T2: two references, by plain memory */

proctype debtor()               /* T1 */
{
    TEMPS;
    byte me = 1;

    rcgc_decref(2);
    release_all();
    atomic { RESET_TEMPS };
    detach()
}

proctype helper()               /* T3 */
{
    TEMPS;
    byte me = 3;

#ifndef LITMUS_TRY
    rcgc_incref(2);
#else
    /* -DLITMUS_TRY: the second reference by rcgc__try_incref, as a slot
       load or a weak upgrade takes one: meeting the OWING word, its one
       CAS carries the entry's reference too and it makes the entry itself */
    try_incref(2);
    assert(t_ok == 1);          /* T3's own reference keeps o2 alive */
#endif
    atomic {
        hold[3*NO+2] = 0; hold[2*NO+2] = hold[2*NO+2] + 2; handed = 1;
        RESET_TEMPS
    };
    atomic { online = online & ~BIT(me); QUIESCE }     /* owns nothing: no queue */
}

proctype owner()                /* T2 */
{
    TEMPS;
    byte me = 2;

    do
    :: handed && HELD(2) -> rcgc_decref(2); release_all(); atomic { RESET_TEMPS }
    :: safepoint()
    :: handed && !HELD(2) -> break
    od;
    detach()
}

init {
    atomic {
        ow[2] = TIDW(2); lc[2] = 3; sh[2] = 0;
        hold[1*NO+2] = 1; hold[2*NO+2] = 1; hold[3*NO+2] = 1;
        dead[0] = 1; dead[1] = 1;
        online = BIT(1) | BIT(2) | BIT(3);
        run debtor();
        run owner();
        run helper()
    }
    (gonem & 6) == 6 && !(online & BIT(3));
    assert(dead[2])             /* every reference went: released */
}
#else
init {
    atomic {
        /* T1 owns o0, o1; T2 owns o2.  T1 holds o0 and o1, T2 holds o2.
           o0.s0 -> o2 (T1's store: shared), o2.s0 -> o0 (T2's store: shared). */
        ow[0] = TIDW(1); lc[0] = 1; sh[0] = ONE;
        ow[1] = TIDW(1); lc[1] = 1; sh[1] = 0;
#ifndef HEAP_OWING
        ow[2] = TIDW(2); lc[2] = 1; sh[2] = ONE;
#else
        /* o0.s0's reference to o2 was stored by T2, and T2 handed T1 a
           reference of its own: both counted in T2's local count, so
           T1's drops of them go below zero */
        ow[2] = TIDW(2); lc[2] = 3; sh[2] = 0; hold[1*NO+2] = 1;
#endif
        slot[0*NS+0] = 3;
        slot[2*NS+0] = 1;
        hold[1*NO+0] = 1; hold[1*NO+1] = 1; hold[2*NO+2] = 1;
        online = BIT(1) | BIT(2);
        run mutator(1);
        run mutator(2);
        run collector()
    }
}
#endif
