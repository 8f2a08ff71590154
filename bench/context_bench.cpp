// bench/context_bench.cpp — the floor: raw boost::context::fiber switches.
//
// No scheduler, no queue: the main context resumes fibers directly. Stacks
// are 64 KiB from malloc (fixedsize_stack), the size stallwatch uses by
// default, so memory numbers compare like with like.
#include <boost/context/fiber.hpp>
#include <boost/context/fixedsize_stack.hpp>

#include <memory>
#include <vector>

#include "harness.hpp"

namespace {

namespace ctx = boost::context;

constexpr std::size_t stack_bytes = 64 * 1024;

ctx::fiber make_fiber(auto&& fn) {
  return ctx::fiber{std::allocator_arg, ctx::fixedsize_stack(stack_bytes), std::forward<decltype(fn)>(fn)};
}

// A fiber that hands control straight back every time it is resumed.
ctx::fiber make_bouncer() {
  return make_fiber([](ctx::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  });
}

// Main and one fiber switch to each other: every resume() is one switch, so
// the sample is ns per switch (the "raw switch" the targets refer to).
void pingpong(bench::CaseArgs const& args) {
  ctx::fiber other = make_bouncer();
  bench::time_per_op(args, 2.0 * static_cast<double>(args.n), [&](std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) other = std::move(other).resume();
  });
}

// 1,000 fibers run round-robin from main: a fiber's turn is a switch in and a
// switch out, the least any scheduler that keeps its own context can do.
void yield_1000(bench::CaseArgs const& args) {
  constexpr std::uint64_t fibers = 1000;
  std::vector<ctx::fiber> ring;
  ring.reserve(fibers);
  for (std::uint64_t i = 0; i < fibers; ++i) ring.push_back(make_bouncer());
  const std::uint64_t rounds = args.n / fibers;
  bench::time_per_op(args, static_cast<double>(rounds * fibers), [&](std::uint64_t) {
    for (std::uint64_t r = 0; r < rounds; ++r) {
      for (auto& f : ring) f = std::move(f).resume();
    }
  });
}

// Create a fiber (malloc its stack), run it to its end, free the stack.
void spawn_join(bench::CaseArgs const& args) {
  bench::time_per_op(args, static_cast<double>(args.n), [](std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) {
      ctx::fiber f = make_fiber([](ctx::fiber&& caller) { return std::move(caller); });
      f = std::move(f).resume();
      bench::keep(f);
    }
  });
}

// n fibers each started and suspended once; the sample is the CPU ms until all
// are suspended. Then each is resumed to its end.
void parked(bench::CaseArgs const& args) {
  const std::uint64_t start = bench::now_ns(bench::Timing::thread_cpu);
  std::vector<ctx::fiber> all;
  all.reserve(args.n);
  for (std::uint64_t i = 0; i < args.n; ++i) {
    all.push_back(make_fiber([](ctx::fiber&& caller) {
      caller = std::move(caller).resume();
      return std::move(caller);
    }));
    all.back() = std::move(all.back()).resume();
  }
  bench::print_sample(static_cast<double>(bench::now_ns(bench::Timing::thread_cpu) - start) / 1e6);
  for (auto& f : all) f = std::move(f).resume();
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_child(argc, argv,
                          {
                              // A raw resume() loop returns from nothing, so where
                              // the fibers yield from cannot matter: the same case.
                              {"pingpong_2fn", pingpong},
                              {"pingpong", pingpong},
                              {"yield_1000", yield_1000},
                              {"spawn_join", spawn_join},
                              {"parked", parked},
                          });
}
