// allow_blocking scopes (stallwatch/allow_blocking.hpp) belong to the fiber
// that opened one: while it is parked inside its scope, the other fibers of
// the loop stay checked. Loop thread. Async-signal-safe reads.
#pragma once

#include <cstdint>

namespace stallwatch::blocking {

// True when the fiber with this id is inside an allow_blocking scope.
bool fiber_allowed(std::uint64_t fiber_id) noexcept;
// True when no fiber of this thread is inside a scope (the common case).
bool no_fiber_allowed() noexcept;

}  // namespace stallwatch::blocking
