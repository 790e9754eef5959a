// bench.cpp: Google Benchmark driver for rcgc.
//
// The loops are in C (loops.c); each call runs kBatch iterations, so the
// C++ -> C call (about 2 ns) is paid once per batch.  Times are per
// iteration: one increment+decrement pair, one new+decref, one load+decref.
//
// After the run, a table of ratios between cases of this same run is
// printed (medians when --benchmark_repetitions > 1), with the targets:
//   owner/nonatomic <= 1.5, atomic/owner >= 3, shared/atomic <= 1.2.
// Code placement alone moves the owner loop by up to 2x on Zen 5, so
// BM_pair_owner_shift/{0,16,32,48} runs it at each 16-byte phase of a
// 64-byte block, and the table shows the ratio's range over those.
// The collector cases (gc_cases.c builds their workloads) time one
// rcgc_collect() each and report objects reclaimed per second, the cost of
// 10^5 garbage beside 10^6 live objects, binary trees against malloc, and
// the longest mutator pause while the collector works; a second table
// gives them with their targets: reclaimed per second for 2-cycles >= 76e6,
// one ring >= 48e6, a random graph >= 7.4e6; livegarbage /1000000 vs /0
// <= 1.1; binary trees rcgc/malloc <= 1.2; longest pause <= 100 us.
// The bench is never a correctness gate: it exits 0 when a target is
// missed (set RCGC_BENCH_STRICT=1 to exit 2 instead).

#include <benchmark/benchmark.h>

#include <rcgc.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "gc_cases.h"
#include "loops.h"

namespace {

constexpr benchmark::IterationCount kBatch = 1000;

void SkipWithErrno(benchmark::State& state, const char* what, int error) {
  std::string msg = std::string(what) + ": " + std::strerror(error);
  state.SkipWithError(msg.c_str());
}

// ---- Baselines --------------------------------------------------------------

void BM_pair_nonatomic(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) bench_pair_nonatomic(kBatch);
  if (bench_nonatomic_value() != 0) state.SkipWithError("plain counter drifted");
}

void BM_pair_atomic(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) bench_pair_atomic(kBatch);
  if (bench_atomic_value() != 0) state.SkipWithError("atomic counter drifted");
}

// fetch_add + load + CAS loop: the instruction shape of rcgc's shared path,
// to tell the cost of the shape from the cost of the runtime around it.
void BM_pair_atomic_cas(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) bench_pair_atomic_cas(kBatch);
  if (bench_atomic_value() != 0) state.SkipWithError("atomic counter drifted");
}

// ---- Counting ---------------------------------------------------------------

// Each rcgc loop acknowledges the epoch once per batch (the QSBR rule for
// long loops); a safepoint costs about 5 ns (BM_safepoint), 0.005 ns per
// iteration of a 1000-iteration batch.

// The pair loop on obj, which the caller made (what: how, for the error);
// drops the caller's reference, which must be the only one left.
void RunPairs(benchmark::State& state, void* obj, const char* what) {
  if (obj == nullptr) {
    SkipWithErrno(state, what, errno);
    return;
  }
  while (state.KeepRunningBatch(kBatch)) {
    bench_pair_rcgc(obj, kBatch);
    rcgc_safepoint();
  }
  size_t count = rcgc_refcount(obj);
  rcgc_decref(obj);
  if (count != 1) state.SkipWithError("count is not 1 after the loop");
}

void BM_pair_owner(benchmark::State& state) {
  RunPairs(state, bench_leaf_new(), "rcgc_new");
}

// BM_pair_owner with its loop moved to each 16-byte phase of a 64-byte
// block (the argument is the shift): the spread is code placement.
void BM_pair_owner_shift(benchmark::State& state) {
  unsigned shift = static_cast<unsigned>(state.range(0));
  void* obj = bench_leaf_new();
  if (obj == nullptr) {
    SkipWithErrno(state, "rcgc_new", errno);
    return;
  }
  while (state.KeepRunningBatch(kBatch)) {
    if (bench_pair_rcgc_shifted(obj, kBatch, shift) != 0) {
      state.SkipWithError("bad shift");
      break;
    }
    rcgc_safepoint();
  }
  size_t count = rcgc_refcount(obj);
  rcgc_decref(obj);
  if (count != 1 && !state.error_occurred())
    state.SkipWithError("count is not 1 after the loop");
}

void BM_pair_shared(benchmark::State& state) {
  void* obj = nullptr;
  int error = bench_foreign_start(&obj);
  if (error != 0) {
    SkipWithErrno(state, "foreign owner", error);
    return;
  }
  while (state.KeepRunningBatch(kBatch)) {
    bench_pair_rcgc(obj, kBatch);
    rcgc_safepoint();
  }
  // Exact: the owner is blocked, nobody else counts.
  size_t count = rcgc_refcount(obj);
  bench_foreign_stop();
  if (count != 1) state.SkipWithError("count is not 1 after the loop");
}

// A non-owner pair on a merged object (its creator let go): the decrement
// is one fetch_sub there, where an unmerged one needs a load and a CAS.
void BM_pair_merged(benchmark::State& state) {
  RunPairs(state, bench_merged_new(), "merged object");
}

void BM_new_decref(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) {
    int error = bench_new_decref(kBatch);
    if (error != 0) {
      SkipWithErrno(state, "rcgc_new", error);
      break;
    }
    rcgc_safepoint();
  }
}

// Baseline for BM_new_decref: the same number of bytes from malloc.
void BM_malloc_free(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) {
    int error = bench_malloc_free(kBatch);
    if (error != 0) {
      SkipWithErrno(state, "malloc", error);
      break;
    }
  }
}

void BM_ref_load(benchmark::State& state) {
  void* target = bench_leaf_new();
  if (target == nullptr) {
    SkipWithErrno(state, "rcgc_new", errno);
    return;
  }
  void* holder = bench_holder_new(target);
  rcgc_decref(target);  // the slot keeps it alive; `target` is borrowed now
  if (holder == nullptr) {
    SkipWithErrno(state, "rcgc_new", errno);
    return;
  }
  while (state.KeepRunningBatch(kBatch)) {
    int error = bench_ref_load(holder, kBatch);
    if (error != 0) {
      state.SkipWithError("rcgc_ref_load returned NULL");
      break;
    }
    rcgc_safepoint();
  }
  size_t count = rcgc_refcount(target);
  rcgc_decref(holder);
  if (count != 1 && !state.error_occurred())
    state.SkipWithError("target count is not 1 after the loop");
}

// What the per-batch safepoint above costs.
void BM_safepoint(benchmark::State& state) {
  while (state.KeepRunningBatch(kBatch)) bench_safepoint(kBatch);
}

// ---- The collector ----------------------------------------------------------

// Each case builds its garbage untimed and times exactly one rcgc_collect()
// (manual time).  The runtime runs with defaults (a background collector
// thread): automatic collections are off during a case, so none starts
// while garbage is built, and the collection that rcgc_collect asks for
// runs on the collector thread while this one waits.

constexpr size_t kCollectObjects = 1000000;
constexpr size_t kLiveGarbage = 100000;
constexpr uint64_t kGraphSeed = 0x9e3779b97f4a7c15u;

// Each case that builds objects starts from the same heap, whatever case
// ran before it (random interleaving puts any case before any other).
// glibc's fast bins hand blocks out again in the reverse order of their
// frees, so a case that followed BM_collect_graph (10^6 blocks freed in
// random order) built its objects at scattered addresses and collected
// them slower: BM_livegarbage's 10^5 garbage took 4.6-5.1 ms (median of
// 25 collections) after nothing, 5.1-7.3 after BM_collect_graph and
// 5.7-10.2 after BM_pause, and /1000000 over /0 came out at 0.98 and 1.46
// in two runs of the main job, 1.05 and 1.68 in two of the collector
// cases.  malloc_trim consolidates the freed blocks: 4.3-5.7 ms after
// each of those (one 7.4), and the ratio 0.89-1.01 in four runs (most
// of rcgc's own free blocks are back in malloc by then: rcgc_reclaim_wait,
// in Settle, gives back the pool and the caller's thread cache).  Within
// a case, iterations inherit the heap their own previous iteration left,
// as a program's do.
void FreshHeap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// For the length of a case: automatic collections off; before and after,
// nothing left buffered and every released object's memory returned; the
// case starts from a fresh heap.
class QuietCollector {
 public:
  QuietCollector() {
    Settle();
    FreshHeap();
  }
  ~QuietCollector() {
    Settle();
    rcgc_enable();
  }
  static void Settle() {
    rcgc_disable();
    rcgc_collect();
    rcgc_reclaim_wait();
  }
};

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// build(&expected) makes garbage and says how many objects the collection
// must reclaim (0 or an errno).
template <typename Build>
void TimeCollections(benchmark::State& state, Build build) {
  size_t reclaimed = 0;
  double seconds = 0;
  std::vector<double> each;  // seconds per collection
  for (auto _ : state) {
    size_t expected = 0;
    int error = build(&expected);
    if (error != 0) {
      SkipWithErrno(state, "building garbage", error);
      break;
    }
    auto t0 = std::chrono::steady_clock::now();
    size_t got = rcgc_collect();
    double dt = Seconds(std::chrono::steady_clock::now() - t0);
    state.SetIterationTime(dt);
    rcgc_reclaim_wait();  // untimed: memory back before the next build
    if (got != expected) {
      std::string msg = "rcgc_collect reclaimed " + std::to_string(got) +
                        " of " + std::to_string(expected) + " objects";
      state.SkipWithError(msg.c_str());
      break;
    }
    reclaimed += got;
    seconds += dt;
    each.push_back(dt);
  }
  if (seconds > 0 && !state.error_occurred()) {
    // The median collection as well as the mean (the Time column): on a
    // busy machine one preempted collection moves the mean.
    std::sort(each.begin(), each.end());
    size_t n = each.size();
    double median = n % 2 ? each[n / 2] : (each[n / 2 - 1] + each[n / 2]) / 2;
    state.counters["median_ms"] = median * 1e3;
    state.counters["objs_per_s"] = static_cast<double>(reclaimed) / seconds;
    state.counters["collected"] =
        static_cast<double>(reclaimed) / static_cast<double>(state.iterations());
  }
}

void BM_collect_pairs(benchmark::State& state) {
  QuietCollector quiet;
  TimeCollections(state, [](size_t* expected) {
    *expected = kCollectObjects;
    return bench_gc_pairs(kCollectObjects);
  });
}

void BM_collect_ring(benchmark::State& state) {
  QuietCollector quiet;
  TimeCollections(state, [](size_t* expected) {
    *expected = kCollectObjects;
    return bench_gc_ring(kCollectObjects);
  });
}

void BM_collect_graph(benchmark::State& state) {
  QuietCollector quiet;
  TimeCollections(state, [](size_t* expected) {
    return bench_gc_graph(kCollectObjects, kGraphSeed, expected);
  });
}

// The floor of BM_collect_pairs (gc_cases.h, bench_gc_floor): the same
// number of blocks, the passes that a concurrent trial deletion cannot do
// without, by atomics (/1) or plain stores (/0); no rcgc.  Shown beside
// the pairs target, which is judged on BM_collect_pairs alone.
void BM_collect_pairs_floor(benchmark::State& state) {
  int atomics = static_cast<int>(state.range(0));
  size_t reclaimed = 0;
  double seconds = 0;
  FreshHeap();
  for (auto _ : state) {
    uint64_t ns = 0;
    int error = bench_gc_floor(kCollectObjects, atomics, &ns);
    if (error != 0) {
      SkipWithErrno(state, "bench_gc_floor", error);
      break;
    }
    state.SetIterationTime(static_cast<double>(ns) / 1e9);
    reclaimed += kCollectObjects;
    seconds += static_cast<double>(ns) / 1e9;
  }
  if (seconds > 0 && !state.error_occurred())
    state.counters["objs_per_s"] = static_cast<double>(reclaimed) / seconds;
}

// 10^5 garbage objects in 2-cycles beside range(0) live objects (in
// 2-cycles, built once per run and examined once, untimed, so they are no
// candidates when the timed collections run).  The cost must follow the
// candidates' subgraph, not the heap: /1000000 vs /0 <= 1.1, compared on
// the median collection of each run (median_ms).
void BM_livegarbage(benchmark::State& state) {
  QuietCollector quiet;
  size_t nlive = static_cast<size_t>(state.range(0));
  void** live = nullptr;
  if (nlive > 0) {
    live = bench_gc_live_new(nlive);
    if (live == nullptr) {
      SkipWithErrno(state, "building live objects", errno);
      return;
    }
    QuietCollector::Settle();
  }
  TimeCollections(state, [](size_t* expected) {
    *expected = kLiveGarbage;
    return bench_gc_pairs(kLiveGarbage);
  });
  bench_gc_live_free(live, nlive);
}

// Benchmarks Game binary-trees, one whole program run per iteration.  The
// rcgc run ends with rcgc_reclaim_wait (timed), so both runs have returned
// all their memory when the clock stops; CPU time is the process's, so it
// includes the reclaimer thread.  Target: rcgc <= 1.2 x malloc.
template <int (*Run)(int, uint64_t*)>
void BinaryTrees(benchmark::State& state, bool reclaim) {
  int depth = static_cast<int>(state.range(0));
  uint64_t expected = bench_bintree_expected(depth);
  FreshHeap();
  for (auto _ : state) {
    uint64_t checked = 0;
    int error = Run(depth, &checked);
    if (reclaim) rcgc_reclaim_wait();
    if (error != 0) {
      SkipWithErrno(state, "building a tree", error);
      break;
    }
    if (checked != expected) {
      std::string msg = "check " + std::to_string(checked) + ", expected " +
                        std::to_string(expected);
      state.SkipWithError(msg.c_str());
      break;
    }
  }
  state.counters["nodes"] = static_cast<double>(expected);
}

void BM_bintree(benchmark::State& state) {
  BinaryTrees<bench_bintree_rcgc>(state, true);
}

void BM_bintree_malloc(benchmark::State& state) {
  BinaryTrees<bench_bintree_malloc>(state, false);
}

// Mutators (one per spare core, 1 or 2) do counting work while the
// collector works through a 10^6-node garbage graph.  Two measures of the
// longest pause: the runtime's own (stats.pause_max_ns, the longest
// hand-over of a root buffer, in the mutator's CPU time; all-time, so
// stats_pause_new says whether this case set it), and the longest single
// call seen by the mutators (op_max_us; its kind is the label), and the
// longest in rounds of ~600 calls that the scheduler did not interrupt
// (op_calm_max_us: on a machine with fewer spare cores than busy threads,
// op_max_us is mostly preemption).  gap_max_us, the longest stretch
// between two calls, is preemption too: the loop does no other work
// between calls.  The control: each timed call is followed by a timed
// call that does nothing (noop_*); what the no-ops suffer, a hypervisor
// taking the CPU or an interrupt, no runtime can avoid, and on a shared
// virtual machine it sets the floor under op_calm_max_us.
// Time is the wall time of the rcgc_collect.
void BM_pause(benchmark::State& state) {
  QuietCollector quiet;
  unsigned cpus = std::thread::hardware_concurrency();
  int mutators = cpus >= 3 ? 2 : 1;
  bench_pause_result worst{};
  uint64_t over_kind[BENCH_OP_KINDS] = {}, ns_kind[BENCH_OP_KINDS] = {};
  uint64_t ops = 0, over = 0, noop_over = 0, switches = 0, op_ns = 0,
           noop_ns = 0,
           stats_before = UINT64_MAX,
           stats_after = 0;
  size_t collected = 0;
  for (auto _ : state) {
    bench_pause_result r;
    int error = bench_pause_run(kCollectObjects, mutators, &r);
    state.SetIterationTime(static_cast<double>(r.collect_ns) / 1e9);
    QuietCollector::Settle();  // untimed: the mutators' leftovers
    if (error != 0) {
      SkipWithErrno(state, "pause run", error);
      break;
    }
    if (r.op_max_ns >= worst.op_max_ns) {
      worst.op_max_ns = r.op_max_ns;
      worst.op_max_kind = r.op_max_kind;
    }
    if (r.calm_max_ns >= worst.calm_max_ns) {
      worst.calm_max_ns = r.calm_max_ns;
      worst.calm_max_kind = r.calm_max_kind;
      worst.calm_max_slept = r.calm_max_slept;
    }
    worst.noop_max_ns = std::max(worst.noop_max_ns, r.noop_max_ns);
    worst.noop_calm_max_ns =
        std::max(worst.noop_calm_max_ns, r.noop_calm_max_ns);
    worst.gap_max_ns = std::max(worst.gap_max_ns, r.gap_max_ns);
    worst.op_p9999_ns = std::max(worst.op_p9999_ns, r.op_p9999_ns);
    stats_before = std::min(stats_before, r.stats_pause_before);
    stats_after = std::max(stats_after, r.stats_pause_after);
    ops += r.ops;
    over += r.ops_over_100us;
    for (int k = 0; k < BENCH_OP_KINDS; k++) {
      over_kind[k] += r.over_100us_kind[k];
      ns_kind[k] += r.op_ns_kind[k];
    }
    noop_over += r.noop_over_100us;
    op_ns += r.op_ns;
    noop_ns += r.noop_ns;
    switches += r.invol_switches;
    collected += r.collected;
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  double iters = static_cast<double>(state.iterations());
  state.counters["mutators"] = mutators;
  state.counters["op_max_us"] = static_cast<double>(worst.op_max_ns) / 1e3;
  state.counters["op_calm_max_us"] =
      static_cast<double>(worst.calm_max_ns) / 1e3;
  state.counters["op_p9999_us"] = static_cast<double>(worst.op_p9999_ns) / 1e3;
  state.counters["ops_over_100us"] = static_cast<double>(over);
  state.counters["noop_max_us"] = static_cast<double>(worst.noop_max_ns) / 1e3;
  state.counters["noop_calm_max_us"] =
      static_cast<double>(worst.noop_calm_max_ns) / 1e3;
  state.counters["noop_over_100us"] = static_cast<double>(noop_over);
  // How much longer the calls were exposed than the no-ops: the count of
  // no-ops over 100 us times this is what the machine alone would give
  // the calls.
  state.counters["op_exposure"] =
      noop_ns > 0 ? static_cast<double>(op_ns) / static_cast<double>(noop_ns)
                  : 0;
  state.counters["gap_max_us"] = static_cast<double>(worst.gap_max_ns) / 1e3;
  state.counters["stats_pause_us"] = static_cast<double>(stats_after) / 1e3;
  state.counters["stats_pause_new"] = stats_after > stats_before ? 1 : 0;
  state.counters["invol_cs"] = static_cast<double>(switches) / iters;
  state.counters["ops"] = static_cast<double>(ops) / iters;
  state.counters["collected"] = static_cast<double>(collected) / iters;
  // Each kind's calls over 100 us, and in brackets what the machine alone
  // would give it: the no-ops' count scaled by the kind's exposure.
  std::string slow;
  for (int k = 0; k < BENCH_OP_KINDS; k++) {
    double expected = noop_ns > 0 ? static_cast<double>(noop_over) *
                                        static_cast<double>(ns_kind[k]) /
                                        static_cast<double>(noop_ns)
                                  : 0;
    char buf[32];
    if (over_kind[k] == 0 && expected < 0.05) continue;
    std::snprintf(buf, sizeof buf, " %llu (%.1f)",
                  static_cast<unsigned long long>(over_kind[k]), expected);
    slow += std::string(slow.empty() ? "" : ", ") + bench_op_name(k) + buf;
  }
  state.SetLabel(std::string("longest call: ") +
                 bench_op_name(worst.op_max_kind) + "; not preempted: " +
                 bench_op_name(worst.calm_max_kind) +
                 (worst.calm_max_slept ? " (slept)" : "") +
                 "; over 100 us (machine alone): " +
                 (slow.empty() ? "none" : slow));
}

BENCHMARK(BM_pair_nonatomic);
BENCHMARK(BM_pair_atomic);
BENCHMARK(BM_pair_atomic_cas);
BENCHMARK(BM_pair_owner);
BENCHMARK(BM_pair_owner_shift)->Arg(0)->Arg(16)->Arg(32)->Arg(48);
BENCHMARK(BM_pair_shared);
BENCHMARK(BM_pair_merged);
BENCHMARK(BM_new_decref);
BENCHMARK(BM_malloc_free);
BENCHMARK(BM_ref_load);
BENCHMARK(BM_safepoint);
BENCHMARK(BM_collect_pairs)->UseManualTime()->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_collect_pairs_floor)->Arg(1)->Arg(0)->UseManualTime()
    ->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_collect_ring)->UseManualTime()->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_collect_graph)->UseManualTime()->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_livegarbage)->Arg(0)->Arg(1000000)->UseManualTime()
    ->Iterations(25)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bintree)->Arg(18)->Iterations(1)->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bintree_malloc)->Arg(18)->Iterations(1)->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pause)->UseManualTime()->Iterations(2)
    ->Unit(benchmark::kMillisecond);

// ---- Reporting ----------------------------------------------------------------

// Forwards everything to the display reporter and keeps, per case (named
// by function and arguments, e.g. "BM_pair_owner_shift/16", without the
// "/iterations:3/manual_time" suffixes), the real and CPU time per
// iteration in ns and the user counters: the "median" aggregate when there
// is one, else the median of the iteration runs seen; and, for pauses, the
// largest value over the runs.
class RatioReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RatioReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner)
      : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override {
    return inner_->ReportContext(context);
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    inner_->ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      Case& c = cases_[name];
      double to_ns = 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit);
      Sample s;
      s.time = {run.GetAdjustedRealTime() * to_ns,
                run.GetAdjustedCPUTime() * to_ns};
      for (const auto& kv : run.counters) s.counters[kv.first] = kv.second.value;
      c.repetitions = std::max<int64_t>(c.repetitions, run.repetitions);
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") {
          c.median = s;
          c.has_median = true;
        }
      } else {
        c.samples.push_back(s);
      }
    }
  }

  void Finalize() override { inner_->Finalize(); }

  struct Time {
    double real_ns;  // per iteration
    double cpu_ns;
  };

  // Per-iteration times of a case into *t, and the number of repetitions
  // they summarize (0: the case did not run, or failed).
  int64_t Get(const std::string& name, Time* t) const {
    const Case* c = Find(name);
    if (c == nullptr) return 0;
    if (c->has_median) {
      *t = c->median.time;
    } else {
      t->real_ns = Median(c->samples, [](const Sample& s) { return s.time.real_ns; });
      t->cpu_ns = Median(c->samples, [](const Sample& s) { return s.time.cpu_ns; });
    }
    return std::max<int64_t>(c->repetitions, 1);
  }

  // A user counter of a case: its median (worst = false) or its largest
  // value over the runs (worst = true).  Returns the number of runs it
  // summarizes, 0 if none reported it.
  int64_t GetCounter(const std::string& name, const std::string& counter,
                     bool worst, double* v) const {
    const Case* c = Find(name);
    if (c == nullptr) return 0;
    std::vector<Sample> with;
    for (const Sample& s : c->samples)
      if (s.counters.count(counter)) with.push_back(s);
    auto value = [&counter](const Sample& s) { return s.counters.at(counter); };
    if (worst && !with.empty()) {
      *v = value(*std::max_element(with.begin(), with.end(),
                                   [&value](const Sample& a, const Sample& b) {
                                     return value(a) < value(b);
                                   }));
      return static_cast<int64_t>(with.size());
    }
    if (c->has_median && c->median.counters.count(counter)) {
      *v = value(c->median);
      return std::max<int64_t>(c->repetitions, 1);
    }
    if (with.empty()) return 0;
    *v = Median(with, value);
    return static_cast<int64_t>(with.size());
  }

 private:
  struct Sample {
    Time time = {0, 0};
    std::map<std::string, double> counters;
  };
  struct Case {
    std::vector<Sample> samples;  // iteration runs
    Sample median;                // the "median" aggregate, if any
    bool has_median = false;
    int64_t repetitions = 0;
  };

  const Case* Find(const std::string& name) const {
    auto it = cases_.find(name);
    if (it == cases_.end()) return nullptr;
    if (!it->second.has_median && it->second.samples.empty()) return nullptr;
    return &it->second;
  }

  template <typename Field>
  static double Median(const std::vector<Sample>& samples, Field field) {
    std::vector<double> v;
    for (const Sample& s : samples) v.push_back(field(s));
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }

  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, Case> cases_;
};

struct Ratio {
  const char* label;
  const char* num;
  const char* den;
  bool at_most;  // target: num/den <= limit, else num/den >= limit
  double limit;
  bool cpu;      // whether the CPU-time ratio means anything (not with
                 // manual time: the CPU clock also ran while building)
  const char* counter = nullptr;  // compare this counter, not the times
  bool judged = true;             // false: shown, no target, no verdict
};

const Ratio kRatios[] = {
    {"owner/nonatomic", "BM_pair_owner", "BM_pair_nonatomic", true, 1.5, true},
    {"atomic/owner", "BM_pair_atomic", "BM_pair_owner", false, 3.0, true},
    {"shared/atomic", "BM_pair_shared", "BM_pair_atomic", true, 1.2, true},
    {"merged/atomic", "BM_pair_merged", "BM_pair_atomic", true, 0, true,
     nullptr, false},
    {"livegarbage 1e6/0", "BM_livegarbage/1000000", "BM_livegarbage/0", true,
     1.1, false, "median_ms"},
    {"bintree rcgc/malloc", "BM_bintree/18", "BM_bintree_malloc/18", true, 1.2,
     true},
};

// Collector targets on a counter of one case.
struct Target {
  const char* label;
  const char* name;
  const char* counter;
  bool worst;    // the largest value over the runs, not the median
  bool at_most;  // target: value <= limit, else value >= limit
  double limit;
  double scale;  // shown as value / scale
  const char* unit;
  const char* info;  // nullptr: judged; else shown with this, no verdict
};

const Target kTargets[] = {
    {"pairs reclaimed/s", "BM_collect_pairs", "objs_per_s", false, false,
     76e6, 1e6, "M/s", nullptr},
    {"  floor, atomics", "BM_collect_pairs_floor/1", "objs_per_s", false,
     false, 76e6, 1e6, "M/s", "(info: no rcgc, see README)"},
    {"  floor, plain", "BM_collect_pairs_floor/0", "objs_per_s", false, false,
     76e6, 1e6, "M/s", "(info: no rcgc, see README)"},
    {"ring reclaimed/s", "BM_collect_ring", "objs_per_s", false, false, 48e6,
     1e6, "M/s", nullptr},
    {"graph reclaimed/s", "BM_collect_graph", "objs_per_s", false, false, 7.4e6,
     1e6, "M/s", nullptr},
    {"pause: stats.pause_max", "BM_pause", "stats_pause_us", true, true, 100, 1,
     "us", nullptr},
    {"pause: call, not preempted", "BM_pause", "op_calm_max_us", true, true,
     100, 1, "us", nullptr},
    {"  no-op, same rounds", "BM_pause", "noop_calm_max_us", true, true, 100, 1,
     "us", "(control: the machine's own)"},
    {"pause: call, any", "BM_pause", "op_max_us", true, true, 100, 1, "us",
     "(info: includes preemption)"},
    {"  no-op, any", "BM_pause", "noop_max_us", true, true, 100, 1, "us",
     "(control)"},
    {"calls over 100 us", "BM_pause", "ops_over_100us", true, true, 100, 1, "",
     "(info)"},
    {"  no-ops over 100 us", "BM_pause", "noop_over_100us", true, true, 100, 1,
     "", "(control)"},
    {"  calls' time / no-ops'", "BM_pause", "op_exposure", false, true, 100, 1,
     "x", "(control: calls over 100 us the machine alone gives = no-ops' x this)"},
};

// A time in ns, with a unit that keeps it short ("1.164 ns", "14.51 ms").
std::string FormatNs(double ns) {
  static const char* const units[] = {"ns", "us", "ms", "s"};
  int u = 0;
  while (u < 3 && ns >= 1000) {
    ns /= 1000;
    u++;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f %s", ns < 10 ? 3 : ns < 100 ? 2 : 1, ns,
                units[u]);
  return buf;
}

// Returns the number of targets missed.  The verdict is on real time; the
// CPU-time ratio is shown beside it, as a hint when the machine is busy
// (real time then includes preemption, CPU time does not).
int PrintRatios(const RatioReporter& rep, FILE* out) {
  int missed = 0;
  int64_t repetitions = 0;
  std::fprintf(out, "\nratios (real time per iteration, this run):\n");
  std::fprintf(out, "  %-20s %12s %12s %8s %8s  %-8s %s\n", "ratio", "num",
               "den", "real", "(cpu)", "target", "verdict");
  for (const Ratio& r : kRatios) {
    RatioReporter::Time num = {0, 0}, den = {0, 0};
    int64_t num_reps = rep.Get(r.num, &num);
    int64_t den_reps = rep.Get(r.den, &den);
    if (r.counter != nullptr) {  // a time in ms, as a counter
      double a = 0, b = 0;
      num_reps = num_reps ? rep.GetCounter(r.num, r.counter, false, &a) : 0;
      den_reps = den_reps ? rep.GetCounter(r.den, r.counter, false, &b) : 0;
      num = {a * 1e6, a * 1e6};
      den = {b * 1e6, b * 1e6};
    }
    repetitions = std::max(repetitions, std::max(num_reps, den_reps));
    char target[32] = "-";
    if (r.judged)
      std::snprintf(target, sizeof target, "%s %.1f", r.at_most ? "<=" : ">=",
                    r.limit);
    if (num_reps == 0 || den_reps == 0 || !(den.real_ns > 0) ||
        !(den.cpu_ns > 0)) {
      std::fprintf(out, "  %-20s %12s %12s %8s %8s  %-8s %s\n", r.label, "-",
                   "-", "-", "-", target, "n/a (not run)");
      continue;
    }
    double value = num.real_ns / den.real_ns;
    char cpu[32] = "-";
    if (r.cpu)
      std::snprintf(cpu, sizeof cpu, "%.2f", num.cpu_ns / den.cpu_ns);
    bool pass = r.at_most ? value <= r.limit : value >= r.limit;
    missed += r.judged && !pass;
    std::fprintf(out, "  %-20s %12s %12s %8.2f %8s  %-8s %s\n", r.label,
                 FormatNs(num.real_ns).c_str(), FormatNs(den.real_ns).c_str(),
                 value, cpu, target,
                 !r.judged ? "(no target)" : pass ? "PASS" : "FAIL");
  }
  // The same ratio for the owner loop at each placement.
  RatioReporter::Time nonatomic = {0, 0};
  if (rep.Get("BM_pair_nonatomic", &nonatomic) && nonatomic.real_ns > 0) {
    double lo = 0, hi = 0;
    int found = 0;
    for (int shift = 0; shift < 64; shift += 16) {
      RatioReporter::Time t = {0, 0};
      std::string name = "BM_pair_owner_shift/" + std::to_string(shift);
      if (!rep.Get(name, &t)) continue;
      double v = t.real_ns / nonatomic.real_ns;
      lo = found ? std::min(lo, v) : v;
      hi = found ? std::max(hi, v) : v;
      found++;
    }
    if (found > 0)
      std::fprintf(out, "  owner/nonatomic over %d loop placements "
                   "(BM_pair_owner_shift): %.2f .. %.2f\n", found, lo, hi);
  }

  std::fprintf(out, "\ncollector (this run; pauses: the worst run, or the "
               "median when only aggregates were reported):\n");
  std::fprintf(out, "  %-26s %12s %-5s %-12s %s\n", "measure", "value", "",
               "target", "verdict");
  for (const Target& t : kTargets) {
    double v = 0;
    int64_t runs = rep.GetCounter(t.name, t.counter, t.worst, &v);
    repetitions = std::max(repetitions, runs);
    char target[32];
    std::snprintf(target, sizeof target, "%s %g", t.at_most ? "<=" : ">=",
                  t.limit / t.scale);
    if (runs == 0) {
      std::fprintf(out, "  %-26s %12s %-5s %-12s %s\n", t.label, "-", t.unit,
                   t.info != nullptr ? "" : target, "n/a (not run)");
      continue;
    }
    bool pass = t.at_most ? v <= t.limit : v >= t.limit;
    if (t.info == nullptr) missed += !pass;
    std::fprintf(out, "  %-26s %12.2f %-5s %-12s %s\n", t.label, v / t.scale,
                 t.unit, t.info != nullptr ? "" : target,
                 t.info != nullptr ? t.info : pass ? "PASS" : "FAIL");
  }
  double gap = 0, fresh = 0;
  if (rep.GetCounter("BM_pause", "gap_max_us", true, &gap))
    std::fprintf(out, "  (longest gap between two mutator calls, i.e. "
                 "preemption: %.0f us)\n", gap);
  if (rep.GetCounter("BM_pause", "stats_pause_new", true, &fresh) &&
      fresh < 1)
    std::fprintf(out, "  (stats.pause_max is all-time and was not raised "
                 "during BM_pause: an earlier case set it)\n");

  if (repetitions > 1)
    std::fprintf(out, "  (medians of %lld repetitions)\n",
                 static_cast<long long>(repetitions));
  else
    std::fprintf(out, "  (single runs; --benchmark_repetitions=5 "
                 "--benchmark_enable_random_interleaving=true gives medians)\n");
  return missed;
}

// The display reporter Google Benchmark would have chosen: a custom
// display reporter replaces its own, so honour --benchmark_format and
// --benchmark_color here (scanned before Initialize consumes them).
struct DisplayChoice {
  std::string format = "console";
  int color = -1;  // -1: auto (a terminal)
};

DisplayChoice ScanDisplayFlags(int argc, char** argv) {
  DisplayChoice c;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (std::strncmp(a, "--benchmark_format=", 19) == 0) c.format = a + 19;
    if (std::strncmp(a, "--benchmark_color=", 18) == 0) {
      std::string v = a + 18;
      if (v == "true" || v == "yes" || v == "1" || v == "always") c.color = 1;
      if (v == "false" || v == "no" || v == "0" || v == "never") c.color = 0;
    }
  }
  return c;
}

std::unique_ptr<benchmark::BenchmarkReporter> MakeDisplay(
    const DisplayChoice& c) {
  if (c.format == "json")
    return std::unique_ptr<benchmark::BenchmarkReporter>(
        new benchmark::JSONReporter);
  bool color = c.color >= 0 ? c.color != 0 : isatty(STDOUT_FILENO) != 0;
  return std::unique_ptr<benchmark::BenchmarkReporter>(
      new benchmark::ConsoleReporter(
          color ? benchmark::ConsoleReporter::OO_Color
                : benchmark::ConsoleReporter::OO_None));
}

}  // namespace

int main(int argc, char** argv) {
  DisplayChoice display = ScanDisplayFlags(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (display.format != "console" && display.format != "json") {
    std::fprintf(stderr, "rcgc_bench: --benchmark_format=%s unsupported "
                 "(console or json)\n", display.format.c_str());
    return 1;
  }

  if (RCGC_DEBUG)
    std::fprintf(stderr, "***WARNING*** rcgc_bench built with RCGC_DEBUG=1: "
                 "the inline paths carry misuse checks; timings are not "
                 "representative.\n");
  int error = rcgc_init(nullptr);
  if (error != 0) {
    std::fprintf(stderr, "rcgc_bench: rcgc_init: %s\n", std::strerror(error));
    return 1;
  }
  RatioReporter reporter(MakeDisplay(display));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  rcgc_shutdown();
  benchmark::Shutdown();

  // With JSON on stdout, keep stdout parseable.
  int missed = PrintRatios(reporter, display.format == "json" ? stderr : stdout);
  const char* strict = std::getenv("RCGC_BENCH_STRICT");
  return missed && strict && std::strcmp(strict, "0") != 0 ? 2 : 0;
}
