// The process-wide count of memory mappings stallwatch adds, kept under
// vm.max_map_count minus a headroom for the rest of the process. Each guard
// page splits a mapping, so guards are what this budget rations. Any thread.
#pragma once

#include <cstddef>

namespace stallwatch::stack {

// The system page size, read once.
std::size_t page_size();
// /proc/sys/vm/max_map_count, read once (65530 if unreadable).
long max_map_count();
// How many mappings stallwatch may add: max_map_count() minus the headroom,
// or less after limit_mapping_budget_for_testing.
long mapping_budget();
// Tests only: caps mapping_budget() at `budget` for the rest of the process,
// so that stacks past the guard budget can be had without carving ~28,000
// of them first. Any thread.
void limit_mapping_budget_for_testing(long budget);

// Counts `count` more mappings if the budget allows; false (nothing counted) otherwise.
bool reserve_mappings(long count);
// Counts mappings that must exist whatever the budget (a region itself, an
// alternate signal stack).
void reserve_mappings_unchecked(long count);
void return_mappings(long count);
// Mappings stallwatch currently counts.
long mappings_in_use();

// Rounds a stack size up to whole pages (at least one page).
std::size_t round_stack_bytes(std::size_t bytes);

}  // namespace stallwatch::stack
