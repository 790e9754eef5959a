#!/usr/bin/env bash
# tests/model/run_model.sh: checks tests/model/rcgc.pml (and buffers.pml,
# finalize.pml) with spin.
#
#   tests/model/run_model.sh NAME [WORKDIR]
#
# NAME is a configuration of the real protocol (real, real_exchange,
# real_rounds, real_truncate, owing, owing_drops, owing_give (not a ctest:
# two minutes), debt, debt_try, weak, weak_all;
# buffers: buffers.pml; finalize, finalize_chain: finalize.pml),
# which must verify with 0 errors, or a
# seeded bug (merged_first, no_grace, plain_free, no_barrier, owner_store,
# no_pin, no_defer_queue, owing_counted, hide_debt, hide_debt_try, merge_no_owner,
# weak_plain, weak_late_clear; buffers_after, buffers_zombie_store,
# buffers_no_zombie_free, buffers_no_consume, buffers_missed_twice;
# finalize_no_recheck, finalize_recheck_count, finalize_twice,
# finalize_keep_dying), for
# which spin must report a violation.  Exits 0 on the expected outcome, 1 otherwise, 2 on a usage or
# tool error.  WORKDIR (default: a fresh temporary directory, removed at
# the end unless RCGC_MODEL_KEEP=1) receives pan.c, pan, the output and any
# trail; a violation's trail is replayed (spin -t) into trail.txt and its
# tail is printed.
#
# The search: spin -a, cc -O0 -DSAFETY -DBITSTATE (supertrace, 2^32 bits =
# 512 MiB, 3 hash functions), ./pan -m200000.  -O0: gcc takes longer to
# optimize rcgc.pml's verifier than the search gains (real: 40 s to
# compile and 82 s to search at -O2, 5 s and 92 s at -O0; a seeded bug,
# caught in a few seconds, paid the whole compile; -O1 took 561 s to
# compile no_grace's on a slow machine), except for the hash functions
# and the bit store, which the search spends most of its time in at -O0
# (d_sfh 48%, bstore_reg 19%, d_hash 12% of no_grace's samples): those
# three alone are compiled at -O2 (a function attribute, added to pan.c
# by sed; a spin whose pan.c names them otherwise just gets -O0), which
# took no_grace's search from 95 to 48 s (the same 20 833 844 states
# stored, the same violation) for 4 s more of compiling.  With about
# 10^8 states and 4*10^9 bits the hash factor is above 40: practically
# every state is visited (pan prints the factor and the states stored).
# The state space is bounded by the operation counts K1, K2 (see
# rcgc.pml's header).
#
#   no_dirty_merge   (hole 5) is accepted too and expected to PASS: the
#                    model finds no violation without DIRTY-first, see the
#                    header of rcgc.pml.
#   weak_null_on_dying  likewise: three objects cannot make the moment, see
#                    the header of rcgc.pml.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=${1:-}
workdir=${2:-}

model=rcgc.pml
case $name in
    buffers*)       model=buffers.pml ;;
    finalize*)      model=finalize.pml ;;
esac
case $name in
    buffers)        defs=(-DK=3);                                    expect=pass ;;
    buffers_after)  defs=(-DK=2 -DBUG_BUFFER_AFTER);                 expect=fail ;;
    buffers_zombie_store) defs=(-DK=2 -DBUG_ZOMBIE_STORE);           expect=fail ;;
    buffers_no_zombie_free) defs=(-DK=2 -DBUG_NO_ZOMBIE_FREE);       expect=fail ;;
    buffers_no_consume) defs=(-DK=2 -DBUG_NO_CONSUME);               expect=fail ;;
    buffers_missed_twice) defs=(-DK=2 -DBUG_MISSED_TWICE);           expect=fail ;;
    finalize)       defs=(-DK=3);                                    expect=pass ;;
    finalize_chain) defs=(-DK=3 -DCHAIN);                            expect=pass ;;
    finalize_no_recheck) defs=(-DK=2 -DBUG_NO_RECHECK);              expect=fail ;;
    finalize_recheck_count) defs=(-DK=2 -DBUG_RECHECK_COUNT);        expect=fail ;;
    finalize_twice) defs=(-DK=2 -DBUG_FINALIZE_TWICE);               expect=fail ;;
    finalize_keep_dying) defs=(-DK=2 -DBUG_KEEP_DYING);              expect=fail ;;
    real)           defs=(-DK=1);                                    expect=pass ;;
    real_exchange)  defs=(-DK1=2 -DK2=1 -DOPS=8);                    expect=pass ;;
    real_rounds)    defs=(-DK=1 -DNCOLL=2);                          expect=pass ;;
    real_truncate)  defs=(-DK=1 -DTRUNCATE);                         expect=pass ;;
    merged_first)   defs=(-DK=1 -DBUG_MERGED_FIRST);                 expect=fail ;;
    no_grace)       defs=(-DK=1 -DBUG_NO_GRACE);                     expect=fail ;;
    plain_free)     defs=(-DK=1 -DBUG_PLAIN_FREE);                   expect=fail ;;
    no_barrier)     defs=(-DK1=2 -DK2=1 -DOPS=8 -DBUG_NO_BARRIER);   expect=fail ;;
    owner_store)    defs=(-DK=1 -DBUG_OWNER_STORE);                  expect=fail ;;
    no_pin)         defs=(-DK=1 -DBUG_NO_PIN);                       expect=fail ;;
    no_dirty_merge) defs=(-DK=1 -DBUG_NO_DIRTY_MERGE);               expect=pass ;;
    owing)          defs=(-DK=1 -DOPS=5 -DHEAP_OWING);               expect=pass ;;
    no_defer_queue) defs=(-DK=1 -DOPS=5 -DHEAP_OWING -DBUG_NO_DEFER_QUEUE); expect=fail ;;
    owing_drops)    defs=(-DK1=2 -DK2=1 -DOPS=1 -DHEAP_OWING);       expect=pass ;;
    owing_counted)  defs=(-DK1=2 -DK2=1 -DOPS=1 -DHEAP_OWING -DBUG_OWING_COUNTED); expect=fail ;;
    owing_give)     defs=(-DK1=2 -DK2=1 -DOPS=35 -DHEAP_OWING);      expect=pass ;;
    debt)           defs=(-DLITMUS_DEBT);                            expect=pass ;;
    hide_debt)      defs=(-DLITMUS_DEBT -DBUG_HIDE_DEBT);            expect=fail ;;
    debt_try)       defs=(-DLITMUS_DEBT -DLITMUS_TRY);               expect=pass ;;
    hide_debt_try)  defs=(-DLITMUS_DEBT -DLITMUS_TRY -DBUG_HIDE_DEBT); expect=fail ;;
    merge_no_owner) defs=(-DLITMUS_DEBT -DBUG_MERGE_NO_OWNER);       expect=fail ;;
    weak)           defs=(-DK1=2 -DK2=1 -DOPS=17 -DWEAK=1);          expect=pass ;;
    weak_all)       defs=(-DK=1 -DOPS=31 -DWEAK=1);                  expect=pass ;;
    weak_plain)     defs=(-DK1=2 -DK2=1 -DOPS=17 -DWEAK=1 -DBUG_WEAK_PLAIN); expect=fail ;;
    weak_late_clear) defs=(-DK1=2 -DK2=1 -DOPS=17 -DWEAK=1 -DBUG_WEAK_LATE_CLEAR); expect=fail ;;
    weak_null_on_dying) defs=(-DK1=2 -DK2=1 -DOPS=17 -DWEAK=1 -DBUG_WEAK_NULL_ON_DYING); expect=pass ;;
    *)
        echo "usage: $0 real|real_exchange|real_rounds|real_truncate|owing|owing_drops|owing_give|debt|debt_try|weak|weak_all|merged_first|no_grace|plain_free|no_barrier|owner_store|no_pin|no_defer_queue|hide_debt|hide_debt_try|merge_no_owner|owing_counted|weak_plain|weak_late_clear|no_dirty_merge|weak_null_on_dying|buffers|buffers_after|buffers_zombie_store|buffers_no_zombie_free|buffers_no_consume|buffers_missed_twice|finalize|finalize_chain|finalize_no_recheck|finalize_recheck_count|finalize_twice|finalize_keep_dying [WORKDIR]" >&2
        exit 2 ;;
esac

spin=${SPIN:-spin}
for tool in "$spin" cc; do
    command -v "$tool" >/dev/null || { echo "run_model: $tool not found" >&2; exit 2; }
done

if [ -z "$workdir" ]; then
    workdir=$(mktemp -d "${TMPDIR:-/tmp}/rcgc-model-$name.XXXXXX")
    [ "${RCGC_MODEL_KEEP:-0}" = 1 ] || trap 'rm -rf "$workdir"' EXIT
else
    mkdir -p "$workdir"
    rm -f "$workdir/$model.trail" "$workdir"/pan.out "$workdir"/trail.txt
fi
cp "$here/$model" "$workdir/$model"
cd "$workdir"

echo "run_model: $name (${defs[*]}), expecting $([ $expect = pass ] && echo '0 errors' || echo 'a violation')"
start=$SECONDS
"$spin" -a "${defs[@]}" "$model" >spin.out 2>&1 || { cat spin.out; exit 2; }
# The search's own hot functions at -O2, the rest at -O0 (see above).
sed -i -E 's/^(d_sfh|d_hash|bstore_reg)\(/__attribute__((optimize("O2"))) \1(/' pan.c || exit 2
cc -O0 -w -DSAFETY -DBITSTATE -o pan pan.c || exit 2
set +e
./pan -m200000 -w32 -k3 >pan.out 2>&1
status=$?
set -e
grep -v '^Depth=' pan.out | grep -v '^\s*$' | grep -v 'unreached in' | grep -v "^\s*$model:[0-9]*, state" || true
echo "run_model: pan exit status $status, $((SECONDS - start))s"

errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.out | head -1)
if [ -z "$errors" ]; then
    echo "run_model: FAILED: no result from pan" >&2
    exit 1
fi
if grep -q 'max search depth too small' pan.out; then
    echo "run_model: FAILED: search depth too small (raise -m)" >&2
    exit 1
fi

if [ -f "$model.trail" ]; then
    "$spin" -t -p -g "${defs[@]}" "$model" >trail.txt 2>&1 || true
    echo "--- counterexample: the last 60 steps of the replay (full: trail.txt, spin -t -p -g)"
    grep -E '^ *[0-9]+:[[:space:]]+proc|assertion violated|invalid end state' trail.txt | tail -60
fi

if [ "$expect" = pass ]; then
    if [ "$errors" -eq 0 ]; then
        echo "run_model: ok: $name verified, 0 errors"
        exit 0
    fi
    echo "run_model: FAILED: $name: spin found $errors error(s) in the real protocol" >&2
    exit 1
fi
if [ "$errors" -ge 1 ] && [ -f "$model.trail" ]; then
    echo "run_model: ok: the seeded bug $name was caught"
    exit 0
fi
echo "run_model: FAILED: the seeded bug $name was not caught" >&2
exit 1
