#include "blocking/allow_scope.hpp"

#include <vector>

#include "base/thread_state.hpp"
#include "stallwatch/allow_blocking.hpp"

namespace stallwatch::blocking {
namespace {

// Few entries: the fibers inside a scope right now.
struct AllowedFiber {
  std::uint64_t fiber_id;
  int depth;
};
thread_local std::vector<AllowedFiber> tls_allowed_fibers;

}  // namespace

bool fiber_allowed(std::uint64_t fiber_id) noexcept {
  for (const AllowedFiber& f : tls_allowed_fibers) {
    if (f.fiber_id == fiber_id) return true;
  }
  return false;
}

bool no_fiber_allowed() noexcept { return tls_allowed_fibers.empty(); }

}  // namespace stallwatch::blocking

namespace stallwatch {
inline namespace v1 {

allow_blocking::allow_blocking() : fiber_id_(base::running_fiber_id()) {
  for (blocking::AllowedFiber& f : blocking::tls_allowed_fibers) {
    if (f.fiber_id == fiber_id_) {
      ++f.depth;
      return;
    }
  }
  blocking::tls_allowed_fibers.push_back(blocking::AllowedFiber{fiber_id_, 1});
}

allow_blocking::~allow_blocking() {
  auto& fibers = blocking::tls_allowed_fibers;
  for (auto it = fibers.begin(); it != fibers.end(); ++it) {
    if (it->fiber_id == fiber_id_) {
      if (--it->depth == 0) fibers.erase(it);
      return;
    }
  }
}

}  // namespace v1
}  // namespace stallwatch
