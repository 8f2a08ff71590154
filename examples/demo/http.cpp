// HTTP/1.1 request parsing (Debian's http-parser), routing and responses.
#include "http.hpp"

#include <charconv>
#include <string>

namespace demo {

namespace {

RequestParser* self(http_parser* p) { return static_cast<RequestParser*>(p->data); }

// Value of key in a query string "a=1&ms=20", or npos-sized absence.
bool query_value(std::string_view query, std::string_view key, std::string_view& value) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      return true;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

bool parse_ms(std::string_view text, int& ms) {
  if (text.empty() || text.size() > 6) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  return ec == std::errc{} && end == text.data() + text.size() && ms >= 0 && ms <= max_ms;
}

}  // namespace

RequestParser::RequestParser(ParserLimits limits) : limits_(limits) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::on_message_begin;
  settings_.on_url = &RequestParser::on_url;
  settings_.on_header_field = &RequestParser::on_header_bytes;
  settings_.on_header_value = &RequestParser::on_header_bytes;
  settings_.on_headers_complete = &RequestParser::on_headers_complete;
  settings_.on_body = &RequestParser::on_body;
  settings_.on_message_complete = &RequestParser::on_message_complete;
}

RequestParser::Result RequestParser::feed(const char* data, std::size_t size) {
  if (error_status_ != 0) return {0, Status::error};
  if (complete_ || size == 0) return {0, complete_ ? Status::request : Status::need_more};
  const std::size_t consumed = http_parser_execute(&parser_, &settings_, data, size);
  const auto err = static_cast<http_errno>(parser_.http_errno);
  if (complete_) return {consumed, Status::request};
  if (err == HPE_OK) {
    if (consumed == size) return {consumed, Status::need_more};
    error_status_ = 400;  // stopped early without an error: an upgrade we do not speak
  } else if (error_status_ == 0) {
    error_status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
  }
  return {consumed, Status::error};
}

void RequestParser::next() {
  request_ = Request{};
  header_bytes_ = 0;
  body_bytes_ = 0;
  started_ = false;
  complete_ = false;
  http_parser_pause(&parser_, 0);
}

int RequestParser::on_message_begin(http_parser* p) {
  self(p)->started_ = true;
  return 0;
}

int RequestParser::on_url(http_parser* p, const char* at, std::size_t length) {
  RequestParser* s = self(p);
  s->header_bytes_ += length;
  if (s->header_bytes_ > s->limits_.max_header_bytes) {
    s->error_status_ = 431;
    return 1;
  }
  s->request_.url.append(at, length);
  return 0;
}

int RequestParser::on_header_bytes(http_parser* p, const char*, std::size_t length) {
  RequestParser* s = self(p);
  s->header_bytes_ += length + 2;  // with the ": " or CRLF that the parser strips
  if (s->header_bytes_ > s->limits_.max_header_bytes) {
    s->error_status_ = 431;
    return 1;
  }
  return 0;
}

int RequestParser::on_headers_complete(http_parser* p) {
  RequestParser* s = self(p);
  s->request_.method = static_cast<http_method>(p->method);
  s->request_.keep_alive = http_should_keep_alive(p) != 0 && p->upgrade == 0;
  return 0;
}

int RequestParser::on_body(http_parser* p, const char*, std::size_t length) {
  RequestParser* s = self(p);
  s->body_bytes_ += length;
  if (s->body_bytes_ > s->limits_.max_body_bytes) {
    s->error_status_ = 413;
    return 1;
  }
  return 0;
}

int RequestParser::on_message_complete(http_parser* p) {
  RequestParser* s = self(p);
  s->complete_ = true;
  // Stop here so the caller answers this request before the next one.
  http_parser_pause(p, 1);
  return 0;
}

Route route_for(http_method method, std::string_view url) {
  http_parser_url parts;
  http_parser_url_init(&parts);
  if (url.empty() || http_parser_parse_url(url.data(), url.size(), 0, &parts) != 0) {
    return {Endpoint::bad_request, 0};
  }
  if ((parts.field_set & (1 << UF_PATH)) == 0) return {Endpoint::bad_request, 0};
  const std::string_view path = url.substr(parts.field_data[UF_PATH].off, parts.field_data[UF_PATH].len);
  std::string_view query;
  if (parts.field_set & (1 << UF_QUERY)) {
    query = url.substr(parts.field_data[UF_QUERY].off, parts.field_data[UF_QUERY].len);
  }

  Endpoint endpoint = Endpoint::not_found;
  if (path == "/") endpoint = Endpoint::hello;
  else if (path == "/cpu") endpoint = Endpoint::cpu;
  else if (path == "/block") endpoint = Endpoint::block;
  else if (path == "/sleep") endpoint = Endpoint::sleep;
  else if (path == "/offload") endpoint = Endpoint::offload;
  else if (path == "/process") endpoint = Endpoint::process;
  if (endpoint == Endpoint::not_found) return {endpoint, 0};
  if (method != HTTP_GET) return {Endpoint::method_not_allowed, 0};

  int ms = default_ms;
  std::string_view text;
  if (query_value(query, "ms", text) && !parse_ms(text, ms)) return {Endpoint::bad_request, 0};
  return {endpoint, ms};
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string format_response(int status, std::string_view body, bool keep_alive) {
  std::string out;
  out.reserve(128 + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\nContent-Type: text/plain\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace demo
