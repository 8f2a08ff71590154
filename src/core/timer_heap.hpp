// Deadlines of parked fibers: a binary min-heap of Fiber* keyed by
// deadline_ns, each fiber knowing its own index so a wake-up removes its timer
// in O(log n). Fit for hundreds of thousands of pending sleeps. Loop thread.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/fiber.hpp"

namespace stallwatch::core {

class TimerHeap {
 public:
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  Fiber* top() const { return heap_.front(); }

  void push(Fiber* f) {
    f->heap_index = heap_.size();
    heap_.push_back(f);
    sift_up(f->heap_index);
  }

  // Inline: most wake-ups (notify, join, I/O) find no timer to remove.
  void remove(Fiber* f) {
    if (f->heap_index != Fiber::no_heap_index) remove_from_heap(f);
  }

 private:
  [[gnu::noinline]] void remove_from_heap(Fiber* f) {
    const std::size_t i = f->heap_index;
    f->heap_index = Fiber::no_heap_index;
    Fiber* last = heap_.back();
    heap_.pop_back();
    if (last == f) return;
    heap_[i] = last;
    last->heap_index = i;
    sift_down(i);
    sift_up(last->heap_index);
  }

  bool less(std::size_t a, std::size_t b) const { return heap_[a]->deadline_ns < heap_[b]->deadline_ns; }

  void swap_at(std::size_t a, std::size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->heap_index = a;
    heap_[b]->heap_index = b;
  }

  void sift_up(std::size_t i) {
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!less(i, parent)) return;
      swap_at(i, parent);
      i = parent;
    }
  }

  void sift_down(std::size_t i) {
    for (;;) {
      const std::size_t left = 2 * i + 1;
      if (left >= heap_.size()) return;
      std::size_t smallest = left;
      if (left + 1 < heap_.size() && less(left + 1, left)) smallest = left + 1;
      if (!less(smallest, i)) return;
      swap_at(i, smallest);
      i = smallest;
    }
  }

  std::vector<Fiber*> heap_;
};

}  // namespace stallwatch::core
