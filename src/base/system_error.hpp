// The one way stallwatch turns an errno into an exception: a
// std::system_error whose message names the operation ("stallwatch: " + what).
// Any thread; NOT async-signal-safe.
#pragma once

#include <string>
#include <system_error>

namespace stallwatch::base {

[[noreturn, gnu::cold]] inline void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "stallwatch: " + what);
}

}  // namespace stallwatch::base
