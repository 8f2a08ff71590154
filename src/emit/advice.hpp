// The advice of blocking-call reports: for a known blocking library call made
// on a loop, the cooperative call to use instead (which one is said beside
// the function in config/probed_functions.hpp; the words are here; DESIGN.md's
// report format). Every blocking-call report carries one line of it (text:
// "advice: …"; JSON: "advice").
#pragma once

#include <string_view>

namespace stallwatch::emit {

// The advice for `function` (a probed function's counted name, e.g.
// "curl_easy_perform", "getaddrinfo", "nanosleep"); anything else gets
// in_thread's. Pure; any thread.
std::string_view advice_for(std::string_view function) noexcept;

}  // namespace stallwatch::emit
