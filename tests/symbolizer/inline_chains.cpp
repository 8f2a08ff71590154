// See inline_chains.hpp. INLINE_CHAINS_NS names the copy being built.
#include "inline_chains.hpp"

#include <algorithm>
#include <ranges>

namespace INLINE_CHAINS_NS {

int wait_for_future(std::future<int>& f) {
  return f.get();  // LINE:future
}

void lock_and_count(std::mutex& m, int& counter) {
  const std::lock_guard lock(m);  // LINE:lock_guard
  ++counter;
}

void sort_descending(std::vector<int>& v, void (*probe)()) {
  std::sort(v.begin(), v.end(), [probe](int a, int b) {  // LINE:sort
    if (a == 7 || b == 7) probe();  // LINE:comparator
    return a > b;
  });
}

long sum_odd_squares(const std::vector<int>& v, void (*probe)()) {
  long sum = 0;
  auto odd_squares = v | std::views::filter([](int x) { return x % 2 != 0; }) |
                     std::views::transform([probe](int x) {
                       if (x == 7) probe();  // LINE:transform
                       return long{x} * x;
                     });
  for (long s : odd_squares) sum += s;  // LINE:ranges
  return sum;
}

}  // namespace INLINE_CHAINS_NS
