// Fiber stacks carved from large anonymous mappings.
//
// A region holds `slots` stacks, each preceded by one page:
//
//   region start                                               region end
//   | guard | stack 0 ... | guard | stack 1 ... | ... | guard | stack n-1 |
//
// The page below each stack is made PROT_NONE while the process's mapping
// budget allows it. Every such page splits the region's mapping, and Linux
// caps the mappings of a process at vm.max_map_count (65530 by default), so
// guards stop once stallwatch's own mappings reach that cap minus a headroom
// left for the rest of the process. Later stacks keep their (accessible)
// page below and are marked unguarded: the loop then catches an overflow by
// a canary at the top of that page (stack_canary.hpp); docs/STACKS.md says
// what that means.
#include "stack/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <system_error>
#include <vector>

#include "base/system_error.hpp"
#include "stack/mapping_budget.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define STALLWATCH_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define STALLWATCH_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

namespace stallwatch::stack {
namespace {

// Regions start at 64 stacks and double up to 4096, so a million fibers need
// a few hundred mappings for the regions themselves.
constexpr std::size_t first_region_slots = 64;
constexpr std::size_t max_region_slots = 4096;

// Mappings left for everything else in the process (malloc arenas, thread
// stacks, shared libraries, other allocators).
constexpr long map_count_headroom = 8192;
constexpr long default_max_map_count = 65530;

std::atomic<long> mappings_added{0};
std::atomic<long> budget_limit_for_testing{-1};  // < 0: no limit

long read_max_map_count() {
  std::ifstream in("/proc/sys/vm/max_map_count");
  long value = 0;
  if (in >> value && value > 0) return value;
  return default_max_map_count;
}

void warn_guards_exhausted_once() {
  static std::atomic<bool> warned{false};
  if (warned.exchange(true, std::memory_order_relaxed)) return;
  std::fprintf(stderr,
               "stallwatch: warning: vm.max_map_count (%ld) leaves no room for more stack guard pages; "
               "new fiber stacks have no guard page: an overflow is caught by a canary when the fiber next "
               "switches, not when it happens, and may have written over memory below it by then "
               "(see docs/STACKS.md)\n",
               max_map_count());
}

// A free stack is its lowest address with bit 0 set when it is guarded
// (stacks are page-aligned, so the low bits are free).
using FreeEntry = std::uintptr_t;

}  // namespace

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

long max_map_count() {
  static const long count = read_max_map_count();
  return count;
}

long mapping_budget() {
  const long budget = std::max(0L, max_map_count() - map_count_headroom);
  const long limit = budget_limit_for_testing.load(std::memory_order_relaxed);
  return limit >= 0 ? std::min(limit, budget) : budget;
}

void limit_mapping_budget_for_testing(long budget) {
  budget_limit_for_testing.store(std::max(0L, budget), std::memory_order_relaxed);
}

bool reserve_mappings(long count) {
  const long limit = mapping_budget();
  long current = mappings_added.load(std::memory_order_relaxed);
  do {
    if (current + count > limit) return false;
  } while (!mappings_added.compare_exchange_weak(current, current + count, std::memory_order_relaxed));
  return true;
}

void reserve_mappings_unchecked(long count) { mappings_added.fetch_add(count, std::memory_order_relaxed); }

void return_mappings(long count) { mappings_added.fetch_sub(count, std::memory_order_relaxed); }

long mappings_in_use() { return mappings_added.load(std::memory_order_relaxed); }

std::size_t round_stack_bytes(std::size_t bytes) {
  const std::size_t page = page_size();
  if (bytes == 0) bytes = 1;
  return (bytes + page - 1) / page * page;
}

struct StackPool::Impl {
  struct Region {
    void* base;
    std::size_t bytes;
    long mappings;  // counted against the budget for this region
  };

  std::vector<Region> regions;
  // Capacity >= every stack carved, so push never allocates. The first
  // `cold` entries had their memory given back (tend); the rest are warm,
  // the most recently released last, handed out first.
  std::vector<FreeEntry> free_list;
  std::size_t cold = 0;
  std::size_t ready_target = 0;  // keep_ready
  std::size_t slot_bytes = 0;        // guard page + stack
  std::uintptr_t next_slot = 0;      // next uncarved slot in the newest region
  std::uintptr_t region_end = 0;
  std::size_t next_region_slots = first_region_slots;
  std::size_t carved = 0;

  // Maps a region of up to next_region_slots stacks, halving on ENOMEM.
  void map_region();
  // Sets the guard page of a slot being carved, while the budget allows.
  // One mprotect per new stack, when it is first needed: guarding a whole
  // region at once (up to 4,096 calls) held the loop for about 16 ms.
  bool guard_slot(std::uintptr_t slot);
  // Carves the next slot (mapping a region when needed): its usable part.
  Stack carve(std::size_t stack_bytes);
  std::size_t warm() const { return free_list.size() - cold; }
};

namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack it
#endif

// Puts the top page of a stack (the fiber's control block and first frames,
// which every fiber touches) in memory now. One madvise where the kernel has
// MADV_POPULATE_WRITE (5.14), else a write.
void populate_top_page(const Stack& stack) noexcept {
  static std::atomic<bool> no_populate{false};
  char* top_page = static_cast<char*>(stack.lo) + stack.size - page_size();
  if (!no_populate.load(std::memory_order_relaxed)) {
    if (::madvise(top_page, page_size(), MADV_POPULATE_WRITE) == 0) return;
    if (errno == EINVAL) no_populate.store(true, std::memory_order_relaxed);
  }
  *static_cast<volatile char*>(top_page) = 0;
}

// Gives a free stack's memory back; it reads as zeros when next touched.
void give_back_pages(const Stack& stack) noexcept { ::madvise(stack.lo, stack.size, MADV_DONTNEED); }

Stack free_stack(FreeEntry entry, std::size_t stack_bytes) {
  return Stack{reinterpret_cast<void*>(entry & ~FreeEntry{1}), stack_bytes, (entry & 1) != 0};
}

FreeEntry free_entry(const Stack& stack) { return reinterpret_cast<FreeEntry>(stack.lo) | (stack.guarded ? 1 : 0); }

}  // namespace

Stack StackPool::Impl::carve(std::size_t stack_bytes) {
  if (next_slot == region_end) map_region();
  const std::uintptr_t slot = next_slot;
  next_slot += slot_bytes;
  ++carved;
  return Stack{reinterpret_cast<void*>(slot + page_size()), stack_bytes, guard_slot(slot)};
}

void StackPool::Impl::map_region() {
  std::size_t slots = next_region_slots;
  void* base = MAP_FAILED;
  while (true) {
    base = ::mmap(nullptr, slots * slot_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base != MAP_FAILED) break;
    if (errno != ENOMEM || slots == 1) base::throw_errno(errno, "mmap fiber stacks");
    slots /= 2;
  }
  // Reserve capacity before anything else can fail, so release() never allocates.
  try {
    free_list.reserve(carved + slots);
    regions.reserve(regions.size() + 1);
  } catch (...) {
    ::munmap(base, slots * slot_bytes);
    throw;
  }
  reserve_mappings_unchecked(1);
  regions.push_back(Region{base, slots * slot_bytes, 1});
  next_slot = reinterpret_cast<std::uintptr_t>(base);
  region_end = next_slot + slots * slot_bytes;
  next_region_slots = std::min(max_region_slots, slots * 2);
}

bool StackPool::Impl::guard_slot(std::uintptr_t slot) {
  // A guard inside the mapping splits it: two more mappings each.
  if (!reserve_mappings(2)) {
    warn_guards_exhausted_once();
    return false;
  }
  if (::mprotect(reinterpret_cast<void*>(slot), page_size(), PROT_NONE) != 0) {
    return_mappings(2);
    warn_guards_exhausted_once();
    return false;
  }
  regions.back().mappings += 2;
  return true;
}

StackPool::StackPool(std::size_t stack_bytes) : stack_bytes_(round_stack_bytes(stack_bytes)), impl_(new Impl) {
  impl_->slot_bytes = stack_bytes_ + page_size();
}

StackPool::~StackPool() {
  for (const auto& region : impl_->regions) {
    ::munmap(region.base, region.bytes);
    return_mappings(region.mappings);
  }
  delete impl_;
}

Stack StackPool::acquire() {
  Impl& impl = *impl_;
  if (!impl.free_list.empty()) {
    const FreeEntry entry = impl.free_list.back();
    impl.free_list.pop_back();
    impl.cold = std::min(impl.cold, impl.free_list.size());
    return free_stack(entry, stack_bytes_);
  }
  return impl.carve(stack_bytes_);
}

void StackPool::release(Stack stack) noexcept {
  STALLWATCH_UNPOISON(stack.lo, stack.size);
  impl_->free_list.push_back(free_entry(stack));
}

void StackPool::keep_ready(std::size_t count) { impl_->ready_target = std::max(impl_->ready_target, count); }

bool StackPool::tend(std::size_t step) noexcept {
  Impl& impl = *impl_;
  for (std::size_t done = 0; done < step; ++done) {
    if (impl.warm() < impl.ready_target) {
      if (impl.cold > 0) {
        // The newest cold entry becomes the oldest warm one: the list stays split in two.
        --impl.cold;
        populate_top_page(free_stack(impl.free_list[impl.cold], stack_bytes_));
      } else {
        Stack stack;
        try {
          stack = impl.carve(stack_bytes_);
        } catch (const std::system_error&) {
          impl.ready_target = impl.warm();  // out of memory: no more ahead of demand
          return false;
        }
        populate_top_page(stack);
        impl.free_list.push_back(free_entry(stack));
      }
    } else if (impl.warm() > std::max(impl.ready_target, min_kept_warm)) {
      give_back_pages(free_stack(impl.free_list[impl.cold], stack_bytes_));
      ++impl.cold;
    } else {
      return false;
    }
  }
  return impl.warm() < impl.ready_target || impl.warm() > std::max(impl.ready_target, min_kept_warm);
}

std::size_t StackPool::warm_free() const { return impl_->warm(); }

std::size_t StackPool::free_stacks() const { return impl_->free_list.size(); }

}  // namespace stallwatch::stack
