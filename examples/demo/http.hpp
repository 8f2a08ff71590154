// The demo's HTTP/1.1 layer without any I/O: a request parser over Debian's
// http-parser, the routing table, and response formatting. Pure functions of
// their input, so the fuzzer drives them directly (fuzz/http_request_fuzz.cpp).
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace demo {

struct Request {
  http_method method = HTTP_GET;
  std::string url;
  bool keep_alive = true;
};

struct ParserLimits {
  std::size_t max_header_bytes = 8192;    // request line + header fields: more is 431
  std::size_t max_body_bytes = 1 << 20;   // more is 413
};

// Incremental request parser. Feed it bytes as they arrive; it stops after
// each complete request so the caller can answer before parsing the next
// (pipelined) one.
class RequestParser {
 public:
  enum class Status {
    need_more,  // every byte consumed, no complete request yet
    request,    // request() is complete; call next() before feeding again
    error,      // malformed: answer error_status() and close
  };
  struct Result {
    std::size_t consumed = 0;
    Status status = Status::need_more;
  };

  explicit RequestParser(ParserLimits limits = {});
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  Result feed(const char* data, std::size_t size);
  const Request& request() const { return request_; }
  // Readies the parser for the next request on the connection.
  void next();
  // True once any byte of the next request has been seen.
  bool in_progress() const { return started_; }
  // 400, 413 or 431 after Status::error.
  int error_status() const { return error_status_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t length);
  static int on_header_bytes(http_parser* p, const char* at, std::size_t length);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t length);
  static int on_message_complete(http_parser* p);

  http_parser parser_{};
  http_parser_settings settings_{};
  ParserLimits limits_;
  Request request_;
  std::size_t header_bytes_ = 0;
  std::size_t body_bytes_ = 0;
  bool started_ = false;
  bool complete_ = false;
  int error_status_ = 0;
};

enum class Endpoint { hello, cpu, block, sleep, offload, process, not_found, bad_request, method_not_allowed };

struct Route {
  Endpoint endpoint = Endpoint::not_found;
  int ms = 0;
};

inline constexpr int default_ms = 100;
inline constexpr int max_ms = 60'000;

// Maps a request to its endpoint and its ?ms=N parameter (0..60000,
// default 100). A bad ms is Endpoint::bad_request.
Route route_for(http_method method, std::string_view url);

// "HTTP/1.1 <status> <reason>" with Content-Length, and "Connection: close"
// unless keep_alive.
std::string format_response(int status, std::string_view body, bool keep_alive);
std::string_view reason_phrase(int status);

}  // namespace demo
