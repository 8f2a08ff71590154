// libFuzzer harness for the demo's request handling: the incremental parser
// (fed in chunks whose size the input picks), routing, and response
// formatting — everything the demo does with bytes from a client before it
// runs an endpoint. Build and run with fuzz/run-fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string>

#include "http.hpp"

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

void answer(const demo::Request& request) {
  const demo::Route route = demo::route_for(request.method, request.url);
  require(route.ms >= 0 && route.ms <= demo::max_ms);
  const std::string response = demo::format_response(200, request.url, request.keep_alive);
  require(response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size -= 1;

  demo::RequestParser parser;
  for (std::size_t pos = 0; pos < size; pos += chunk) {
    const std::size_t end = pos + chunk < size ? pos + chunk : size;
    std::size_t at = pos;
    while (at < end) {
      const demo::RequestParser::Result r = parser.feed(bytes + at, end - at);
      require(r.consumed <= end - at);
      at += r.consumed;
      if (r.status == demo::RequestParser::Status::error) {
        const int status = parser.error_status();
        require(status == 400 || status == 413 || status == 431);
        require(!demo::format_response(status, demo::reason_phrase(status), false).empty());
        return 0;
      }
      if (r.status == demo::RequestParser::Status::need_more) {
        require(at == end);
        break;
      }
      answer(parser.request());
      if (!parser.request().keep_alive) return 0;
      parser.next();
    }
  }
  return 0;
}
