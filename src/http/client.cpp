// The HTTP client (stallwatch/http.hpp): an easy handle per request, taken
// from a per-thread free list, configured from the Request and performed by
// curl::perform on the loop's multi handle; host names resolved by
// stallwatch's DNS.
#include <arpa/inet.h>
#include <strings.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "curl/multi.hpp"
#include "http/system_ca.hpp"
#include "stallwatch/curl.hpp"
#include "stallwatch/file.hpp"
#include "stallwatch/http.hpp"
#include "stallwatch/net.hpp"

namespace stallwatch {
inline namespace v1 {
namespace http {
namespace {

// Easy handles kept for the next request of the thread: a handle carries
// buffers worth reusing, while connections live in the loop's multi. They are
// not reset (curl_easy_reset costs some 4% of a small request's CPU):
// configure() sets every option a request uses, each time, to the request's
// value or to curl's default.
class EasyPool {
 public:
  ~EasyPool() {
    for (CURL* easy : free_) curl_easy_cleanup(easy);
  }
  CURL* take() {
    if (free_.empty()) return curl_easy_init();
    CURL* easy = free_.back();
    free_.pop_back();
    return easy;
  }
  void give(CURL* easy) {
    if (free_.size() >= max_kept) {
      curl_easy_cleanup(easy);
      return;
    }
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);  // it was in the ended request's frame
    free_.push_back(easy);
  }

 private:
  static constexpr std::size_t max_kept = 256;
  std::vector<CURL*> free_;
};

thread_local EasyPool easy_pool;

struct EasyLease {
  CURL* easy = easy_pool.take();
  ~EasyLease() {
    if (easy != nullptr) easy_pool.give(easy);
  }
};

// Host names go through stallwatch's DNS (getaddrinfo on the in_thread pool)
// and reach curl as CURLOPT_RESOLVE entries: libcurl's threaded resolver,
// though off the loop, makes the loop wait on its thread's mutex at the end
// of a lookup. Cached per thread for a minute, as curl caches its own.
class HostCache {
 public:
  // "host:port:address,address…" for url's host, or "" when curl needs no
  // lookup (an address, localhost) or cannot parse the URL (it then says why).
  std::string entry_for(const std::string& url) {
    if (url.find("://") == std::string::npos) return entry_for(parse(url));
    const Target* target = target_of(url);
    return target != nullptr ? entry_for(*target) : "";
  }

 private:
  // What a URL's scheme and authority say: the host to look up, if any.
  struct Target {
    bool parsed = false;
    bool needs_lookup = false;
    std::string host;
    long port = 0;
    std::string key;  // "host:port"
  };
  struct Entry {
    std::string entry;
    std::chrono::steady_clock::time_point expires;
  };
  static constexpr std::size_t max_entries = 1024;

  std::string entry_for(const Target& target) {
    return target.needs_lookup ? lookup(target.host, target.port, target.key) : "";
  }

  // By value: the lookup parks the fiber, and others may change the targets.
  std::string lookup(std::string host, long port, std::string key) {
    const auto now = std::chrono::steady_clock::now();
    if (auto it = entries_.find(key); it != entries_.end() && it->second.expires > now) return it->second.entry;
    std::string entry = key + ":";
    bool first = true;
    for (const SocketAddress& a : resolve(host, static_cast<std::uint16_t>(port))) {
      std::string text = a.to_string();
      text.erase(text.rfind(':'));
      if (!first) entry += ',';
      entry += text;
      first = false;
    }
    if (entries_.size() >= max_entries) entries_.clear();
    entries_[key] = Entry{entry, now + std::chrono::seconds(60)};
    return entry;
  }

  // Parsing a URL with curl costs some 8% of a small keep-alive request's
  // CPU, so targets are kept by "scheme://authority", which alone decides
  // them. nullptr for a URL curl cannot parse, which is not kept (the rest of
  // the URL may be what curl refused). `url` has "://".
  const Target* target_of(const std::string& url) {
    const std::size_t authority_end = url.find_first_of("/?#", url.find("://") + 3);
    const std::string_view prefix = std::string_view(url).substr(0, authority_end);
    if (last_ != nullptr && last_->first == prefix) return &last_->second;
    auto it = targets_.find(std::string(prefix));
    if (it == targets_.end()) {
      Target target = parse(url);
      if (!target.parsed) return nullptr;
      if (targets_.size() >= max_entries) {
        targets_.clear();
        last_ = nullptr;
      }
      it = targets_.emplace(std::string(prefix), std::move(target)).first;
    }
    last_ = &*it;
    return &it->second;
  }

  static Target parse(const std::string& url) {
    Target target;
    target.parsed = host_and_port(url, target.host, target.port);
    if (!target.parsed || !needs_lookup(target.host)) return target;
    target.needs_lookup = true;
    target.key = target.host + ":" + std::to_string(target.port);
    return target;
  }

  static bool host_and_port(const std::string& url, std::string& host, long& port) {
    CURLU* parsed = curl_url();
    if (parsed == nullptr) return false;
    char* h = nullptr;
    char* p = nullptr;
    const bool ok = curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
                    curl_url_get(parsed, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
                    curl_url_get(parsed, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok) {
      host = h;
      port = std::strtol(p, nullptr, 10);
    }
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(parsed);
    return ok && port > 0 && port < 65536;
  }

  static bool needs_lookup(const std::string& host) {
    in_addr v4;
    if (host.empty() || host.front() == '[' || inet_pton(AF_INET, host.c_str(), &v4) == 1) return false;
    return strcasecmp(host.c_str(), "localhost") != 0;  // curl answers localhost itself
  }

  std::unordered_map<std::string, Target> targets_;
  const std::pair<const std::string, Target>* last_ = nullptr;  // the last one used
  std::unordered_map<std::string, Entry> entries_;
};

thread_local HostCache host_cache;

// What curl's callbacks fill, and the first exception one of them caught
// (callbacks run inside libcurl, which must not be unwound through).
struct Exchange {
  const Request* request = nullptr;
  CURL* easy = nullptr;
  Response response;
  std::exception_ptr failure;
  std::string ca_text;
};

// Room made at a response's first header: a typical response's headers
// without regrowing the vector.
constexpr std::size_t expected_headers = 12;

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* x = static_cast<Exchange*>(user);
  const std::size_t n = size * count;
  try {
    std::string_view line(data, n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
      x->response.headers.clear();  // a new response (after a redirect or a 100 Continue)
      return n;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return n;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    Headers& headers = x->response.headers;
    if (headers.empty()) headers.reserve(expected_headers);
    headers.emplace_back(std::piecewise_construct, std::forward_as_tuple(line.substr(0, colon)),
                         std::forward_as_tuple(value));
  } catch (...) {
    x->failure = std::current_exception();
    return 0;
  }
  return n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* x = static_cast<Exchange*>(user);
  const std::size_t n = size * count;
  if (curl_adapter::pause_if_round_spent(x->easy)) return CURL_WRITEFUNC_PAUSE;
  try {
    if (x->request->on_body) x->request->on_body(std::string_view(data, n));
    else x->response.body.append(data, n);
  } catch (...) {
    x->failure = std::current_exception();
    return 0;
  }
  return n;
}

// Sets every option a request uses (a pooled handle keeps the last
// request's): the request's value, or curl's default.
void configure(CURL* easy, const Request& request, Exchange& exchange, curl_slist*& headers, char* error_text) {
  curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &exchange);
  // The method from curl's defaults: no body (CURLOPT_POSTFIELDS, even
  // null, selects POST, so it comes first), then GET (which also clears
  // NOBODY and upload), then this request's method and body.
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{-1});
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, nullptr);
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  const bool custom = request.method != "GET" && request.method != "HEAD";
  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, custom ? request.method.c_str() : nullptr);
  if (request.method == "HEAD") curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
  }
  for (const auto& [name, value] : request.headers) {
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    curl_slist* more = curl_slist_append(headers, line.c_str());
    if (more == nullptr) throw std::bad_alloc();
    headers = more;
  }
  // No "Expect: 100-continue" round trip before a large body.
  if (!request.body.empty()) {
    curl_slist* more = curl_slist_append(headers, "Expect:");
    if (more == nullptr) throw std::bad_alloc();
    headers = more;
  }
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, request.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, request.max_redirects > 0 ? request.max_redirects : -1L);
  // A request that finds a TLS connection to its host still being set up
  // waits to learn whether it speaks HTTP/2, and then shares it, rather than
  // opening one more (HTTPS only: plain http:// never multiplexes).
  const bool https = request.url.size() >= 8 && strncasecmp(request.url.c_str(), "https://", 8) == 0;
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, https ? 1L : 0L);
  // The CAs to trust, for HTTPS and for redirects that may lead to it. A
  // request's own CA file is read off the loop and handed over as a blob (a
  // test's file may change between requests); the system store comes parsed.
  if (https || request.max_redirects > 0) {
    if (request.ca_file.empty()) {
      http_client::set_trusted_cas(easy, nullptr);
    } else {
      exchange.ca_text = read_file(request.ca_file);
      curl_blob blob{exchange.ca_text.data(), exchange.ca_text.size(), CURL_BLOB_COPY};
      http_client::set_trusted_cas(easy, &blob);
    }
  }
}

struct SlistFree {
  curl_slist* list = nullptr;
  ~SlistFree() { curl_slist_free_all(list); }
};

}  // namespace

std::optional<std::string> Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0) return value;
  }
  return std::nullopt;
}

Response fetch(const Request& request) {
  curl_adapter::init_curl_once();
  EasyLease lease;
  if (lease.easy == nullptr) throw error("stallwatch: http " + request.method + " " + curl::redact_url(request.url) +
                                             ": curl_easy_init failed", CURLE_OUT_OF_MEMORY);
  Exchange exchange;
  exchange.request = &request;
  exchange.easy = lease.easy;
  SlistFree headers;
  char error_text[CURL_ERROR_SIZE] = {};
  configure(lease.easy, request, exchange, headers.list, error_text);
  SlistFree resolved;
  std::string entry;
  try {
    entry = host_cache.entry_for(request.url);
  } catch (const std::system_error& e) {
    throw error("stallwatch: http " + request.method + " " + curl::redact_url(request.url) + ": " +
                    curl_easy_strerror(CURLE_COULDNT_RESOLVE_HOST) + " (" + e.what() + ")",
                CURLE_COULDNT_RESOLVE_HOST);
  }
  if (!entry.empty()) {
    resolved.list = curl_slist_append(nullptr, entry.c_str());
    if (resolved.list == nullptr) throw std::bad_alloc();
  }
  curl_easy_setopt(lease.easy, CURLOPT_RESOLVE, resolved.list);
  const CURLcode rc = curl::perform(lease.easy, request.deadline);
  if (exchange.failure) std::rethrow_exception(exchange.failure);
  if (rc != CURLE_OK) {
    std::string what = "stallwatch: http " + request.method + " " + curl::redact_url(request.url) + ": " +
                       curl_easy_strerror(rc);
    if (error_text[0] != '\0') what += std::string(" (") + error_text + ")";
    throw error(what, rc);
  }
  curl_easy_getinfo(lease.easy, CURLINFO_RESPONSE_CODE, &exchange.response.status);
  return std::move(exchange.response);
}

Response get(const std::string& url, Deadline deadline) {
  Request request;
  request.url = url;
  request.deadline = deadline;
  return fetch(request);
}

Response post(const std::string& url, std::string body, const std::string& content_type, Deadline deadline) {
  Request request;
  request.method = "POST";
  request.url = url;
  request.body = std::move(body);
  request.headers.emplace_back("Content-Type", content_type);
  request.deadline = deadline;
  return fetch(request);
}

}  // namespace http
}  // namespace v1
}  // namespace stallwatch
