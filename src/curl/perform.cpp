// curl::perform and friends (stallwatch/curl.hpp) over the loop's Multi.
#include <strings.h>

#include <string>

#include "base/coarse_clock.hpp"
#include "core/fiber.hpp"
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "curl/client_stats.hpp"
#include "curl/multi.hpp"
#include "stallwatch/curl.hpp"

namespace stallwatch {
inline namespace v1 {
namespace curl {
namespace {

// "GET http://user@host/x": how messages name a transfer.
std::string describe(CURL* easy) {
  const char* method = nullptr;
  const char* url = nullptr;
  curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_METHOD, &method);
  curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
  std::string out = method != nullptr ? method : "";
  if (!out.empty()) out += ' ';
  out += url != nullptr ? redact_url(url) : std::string("(no URL)");
  return out;
}

// Counts HTTP(S) transfers only: other protocols have no method or status.
void record(curl_adapter::ClientStats& stats, CURL* easy, bool got_response, std::uint64_t started_ns) {
  const char* scheme = nullptr;
  curl_easy_getinfo(easy, CURLINFO_SCHEME, &scheme);
  if (scheme == nullptr || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) return;
  const char* method = nullptr;
  curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_METHOD, &method);
  long status = 0;
  if (got_response) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  stats.record(method != nullptr ? method : "_OTHER", status, base::monotonic_ns() - started_ns);
}

}  // namespace

CURLcode perform(CURL* easy, Deadline deadline) {
  core::Loop& loop = core::Loop::require("curl::perform");
  core::Fiber* self = loop.running();
  if (self->cancel_requested) core::throw_operation_cancelled("curl::perform " + describe(easy));
  const std::uint64_t started_ns = base::monotonic_ns();
  const auto started = deadline.is_set() ? Clock::now() : Clock::time_point{};
  std::shared_ptr<curl_adapter::Multi> multi = curl_adapter::Multi::for_this_loop(loop);

  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &curl_adapter::open_socket);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, nullptr);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &curl_adapter::close_socket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, nullptr);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

  curl_adapter::Transfer transfer{easy, self};
  multi->add(transfer);
  const std::uint64_t deadline_ns = core::to_deadline_ns(deadline);
  while (!transfer.done) {
    const core::WakeReason why = loop.park(deadline_ns);
    if (transfer.done || why == core::WakeReason::notified) continue;
    multi->abandon(transfer);
    record(multi->stats(), easy, false, started_ns);
    if (why == core::WakeReason::timeout) {
      core::throw_operation_deadline_exceeded("curl::perform " + describe(easy), deadline.at - started);
    }
    core::throw_operation_cancelled("curl::perform " + describe(easy));
  }
  record(multi->stats(), easy, transfer.result == CURLE_OK, started_ns);
  return transfer.result;
}

void set_max_host_connections(long n) {
  core::Loop& loop = core::Loop::require("curl::set_max_host_connections");
  curl_adapter::Multi::for_this_loop(loop)->set_max_host_connections(n);
}

std::string redact_url(const std::string& url) {
  // scheme://user:password@host… → scheme://user@host…
  const std::size_t scheme_end = url.find("://");
  const std::size_t authority = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  const std::size_t authority_end = url.find_first_of("/?#", authority);
  const std::size_t at = url.rfind('@', authority_end == std::string::npos ? url.size() : authority_end);
  if (at == std::string::npos || at < authority) return url;
  const std::size_t colon = url.find(':', authority);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + url.substr(at);
}

}  // namespace curl
}  // namespace v1
}  // namespace stallwatch
