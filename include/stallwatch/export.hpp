// stallwatch/export.hpp — symbol visibility for the shared library.
//
// The library is built with hidden visibility; STALLWATCH_EXPORT marks the
// functions and types that form the public API.
#pragma once

#if defined(STALLWATCH_BUILDING)
#define STALLWATCH_EXPORT __attribute__((visibility("default")))
#else
#define STALLWATCH_EXPORT
#endif

namespace stallwatch {
inline namespace v1 {}
}  // namespace stallwatch
