// stallwatch/http.hpp — a small cooperative HTTP(S) client on curl::perform.
//
// fetch() sends a request on the calling fiber's loop and parks the fiber
// until the response has arrived; other fibers run meanwhile. Requests of a
// loop share its connections (keep-alive, HTTP/2 multiplexing), its DNS cache
// and its per-host connection limit (curl::set_max_host_connections).
//
// A 4xx or 5xx status is a Response like any other. A transport failure
// (refused, reset, TLS, DNS, too many redirects …) throws http::error, whose
// message names the method, the URL and curl's reason; a password in the URL
// never appears in a message. Past its deadline a request throws
// deadline_exceeded; Task::cancel() ends it at once (cancelled).
//
// HTTPS verifies the peer against the system CA store (curl's CA bundle), or
// against the CA file a request names instead; both are read off the loop.
// With OpenSSL (Debian's libcurl) the bundle is parsed once per process, on
// the offload pool; with another TLS library curl parses it itself, on the
// loop, at the first HTTPS request of each loop (some 40 ms). Redirects are
// not followed unless a request sets max_redirects.
//
// Host names are looked up by stallwatch's DNS (getaddrinfo on the in_thread
// pool, cached for a minute per thread) and handed to curl, so no lookup
// touches the loop; a redirect to another host is looked up by libcurl's
// threaded resolver.
//
// Loop thread, from a fiber.
//
//   auto r = stallwatch::http::get("http://127.0.0.1:8080/health", stallwatch::deadline_after(2s));
//   if (r.status == 200) use(r.body);
//   auto type = r.header("content-type");          // case-insensitive
//
//   stallwatch::http::Request big{.url = "https://example.com/dump"};
//   big.on_body = [&](std::string_view chunk) { out.write(chunk); };  // streamed
//   stallwatch::http::fetch(big);
#pragma once

#include <curl/curl.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {
namespace http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  Deadline deadline;
  // Follow at most this many redirects; 0 (the default): a 3xx is returned
  // as it is. Going past the limit throws http::error (too many redirects).
  long max_redirects = 0;
  // PEM file of the CAs to trust for this request instead of the system store.
  std::string ca_file;
  // When set, the body is handed over chunk by chunk as it arrives and
  // Response::body stays empty: memory stays flat however large the body.
  // Runs on the loop, inside libcurl: it must not park (no sleep, no channel
  // send that could wait). An exception it throws ends the request and is
  // rethrown by fetch(). A body that comes faster than on_body takes it is
  // paused after some 2 ms of the loop's time and resumed after the loop's
  // other work: a slow on_body slows its transfer, not the loop. A single
  // call longer than the stall threshold is a stall of fiber "curl multi",
  // reported at on_body's own line.
  std::function<void(std::string_view chunk)> on_body;
};

struct Response {
  long status = 0;
  Headers headers;  // of the final response, in order received
  std::string body;

  // The first header named `name`, any letter case; nullopt when absent.
  STALLWATCH_EXPORT std::optional<std::string> header(std::string_view name) const;
};

// A transport failure: what() names the method, the URL (no password) and
// curl's reason; code() is curl's result.
class STALLWATCH_EXPORT error : public std::runtime_error {
 public:
  error(const std::string& what, CURLcode code) : std::runtime_error(what), code_(code) {}
  CURLcode code() const noexcept { return code_; }

 private:
  CURLcode code_;
};

// Sends `request` and returns the response. Throws http::error,
// deadline_exceeded, cancelled, not_on_loop, or what on_body threw.
STALLWATCH_EXPORT Response fetch(const Request& request);

STALLWATCH_EXPORT Response get(const std::string& url, Deadline deadline = {});
STALLWATCH_EXPORT Response post(const std::string& url, std::string body, const std::string& content_type,
                                Deadline deadline = {});

}  // namespace http
}  // namespace v1
}  // namespace stallwatch
