// stallwatch/curl.hpp — any libcurl transfer on the loop, without blocking it.
//
// curl::perform() is the cooperative curl_easy_perform: it runs an easy handle
// the caller configured (HTTP/1.1, HTTP/2, HTTPS, SMTP, FTP …) on the calling
// fiber's loop and parks the fiber until the transfer ends; other fibers run
// meanwhile. Each loop has one curl multi handle, driven by the loop's epoll
// reactor (curl's socket interface), so the transfers of a loop share its
// connection cache, DNS cache and HTTP/2 multiplexing. Name resolution runs on
// libcurl's threaded resolver, off the loop.
//
// Call curl_global_init(CURL_GLOBAL_DEFAULT) before run(), as libcurl asks
// of every program, before the first curl_easy_init: it reads OpenSSL's
// configuration file, and curl_easy_init would otherwise do it on the loop.
// (http::fetch sees to it itself, off the loop.)
//
// Loop thread, from a fiber. Built only when stallwatch is built with libcurl
// (meson option `curl`); then the umbrella header includes this one.
//
//   CURL* easy = curl_easy_init();
//   curl_easy_setopt(easy, CURLOPT_URL, "smtp://mail.example.com");
//   ...
//   CURLcode rc = stallwatch::curl::perform(easy, stallwatch::deadline_after(10s));
//
// perform() owns these options of the handle while it runs (it sets them;
// do not set them yourself): CURLOPT_OPENSOCKETFUNCTION,
// CURLOPT_CLOSESOCKETFUNCTION and their data, CURLOPT_NOSIGNAL. Use the
// Deadline rather than CURLOPT_TIMEOUT: curl counts time spent queued behind
// the connection limits in CURLOPT_TIMEOUT, and the Deadline is simply a time
// at which the call gives up.
//
// Callbacks (CURLOPT_WRITEFUNCTION …) run on the loop, in the fiber "curl
// multi" that drives the loop's transfers. The driver lets the loop take a
// pass between rounds of some 2 ms, but one socket action can read up to
// 100 buffers (1.6 MiB at the default 16 KiB) from a busy socket and hand
// each to the write callback: its time, times 100, is one slice of the loop.
#pragma once

#include <curl/curl.h>

#include <string>

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {
namespace curl {

// Performs `easy` on this loop's multi handle; returns curl's result for the
// transfer (CURLE_OK, or the transport failure: check it as after
// curl_easy_perform). The handle must not be in another multi handle.
//
// Past `deadline` the transfer is removed from the multi handle and
// deadline_exceeded is thrown, naming the method and URL ("stallwatch:
// curl::perform GET http://host/x: deadline exceeded after 500 ms"); a
// password in the URL is never shown. Task::cancel() of the calling fiber ends
// the transfer at once and throws cancelled. A transfer removed before its
// end never leaves its connection in the cache half-read: curl closes it.
// Throws not_on_loop off a loop, std::invalid_argument when curl refuses the
// handle (e.g. it is already being performed).
STALLWATCH_EXPORT CURLcode perform(CURL* easy, Deadline deadline = {});

// Caps the connections this loop's multi handle opens to one host
// (CURLMOPT_MAX_HOST_CONNECTIONS; 0, the default, is no cap). Transfers beyond
// the cap wait in curl's queue (their Deadline keeps running). Loop thread.
STALLWATCH_EXPORT void set_max_host_connections(long n);

// The URL with any password removed ("http://user@host/"), as stallwatch
// writes it in every message. Any thread.
STALLWATCH_EXPORT std::string redact_url(const std::string& url);

}  // namespace curl
}  // namespace v1
}  // namespace stallwatch
