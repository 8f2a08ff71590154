// Code whose hot spots sit deep in inlined standard-library templates, for
// the symbolizer test: built -O2 -g twice, into the test program (namespace
// in_program) and into libinline_chains.so (namespace in_library), so the
// same chains are symbolized in a PIE without -rdynamic and in a shared
// library. Each line marked `// LINE:<name>` is the call into a chain.
#pragma once

#include <future>
#include <mutex>
#include <vector>

#define INLINE_CHAINS_DECLARE(ns)                                                           \
  namespace ns {                                                                            \
  /* Blocks in f.get() until the promise is set; returns the value. */                      \
  int wait_for_future(std::future<int>& f);                                                 \
  /* Takes m through std::lock_guard (blocking while another thread holds it). */          \
  void lock_and_count(std::mutex& m, int& counter);                                         \
  /* Sorts v descending with a lambda comparator that calls probe() once it compares 7. */ \
  void sort_descending(std::vector<int>& v, void (*probe)());                               \
  /* Sums the squares of the odd values through a ranges pipeline; probe() at 7. */        \
  long sum_odd_squares(const std::vector<int>& v, void (*probe)());                         \
  }

INLINE_CHAINS_DECLARE(in_program)
INLINE_CHAINS_DECLARE(in_library)
