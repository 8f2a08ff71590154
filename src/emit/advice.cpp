#include "emit/advice.hpp"

namespace stallwatch::emit {
namespace {

struct Advice {
  std::string_view function;
  std::string_view advice;
};

constexpr std::string_view use_http = "use stallwatch::curl::perform or stallwatch::http (the fiber parks, the loop runs on)";
constexpr std::string_view use_dns = "use stallwatch::resolve, stallwatch's DNS (or TcpStream::connect with a host name)";
constexpr std::string_view use_sleep = "use stallwatch::sleep_for (or sleep_until)";
constexpr std::string_view use_process = "use stallwatch::run_process";
constexpr std::string_view use_future = "wait on a stallwatch::Future, or run the blocking wait with stallwatch::in_thread";
constexpr std::string_view use_pg = "use stallwatch::pg (a cooperative PostgreSQL client)";
constexpr std::string_view use_in_thread = "run the call with stallwatch::in_thread (the fiber parks, a pool thread blocks)";

constexpr Advice table[] = {
    {"curl_easy_perform", use_http},
    {"getaddrinfo", use_dns},
    {"gethostbyname", use_dns},
    {"sleep", use_sleep},
    {"usleep", use_sleep},
    {"nanosleep", use_sleep},
    {"clock_nanosleep", use_sleep},
    {"system", use_process},
    {"popen", use_process},
    // std::future::get, std::condition_variable and the other standard waits
    // reach the kernel as futex and pthread_cond_* calls.
    {"futex", use_future},
    {"pthread_cond_wait", use_future},
    {"pthread_cond_timedwait", use_future},
    {"pthread_cond_clockwait", use_future},
    {"PQexec", use_pg},
    {"PQexecParams", use_pg},
    {"PQprepare", use_pg},
    {"PQexecPrepared", use_pg},
    {"PQconnectdb", use_pg},
    {"PQconnectdbParams", use_pg},
    {"PQgetResult", use_pg},
    {"PQcancel", use_pg},
};

}  // namespace

std::string_view advice_for(std::string_view function) noexcept {
  for (const Advice& a : table) {
    if (a.function == function) return a.advice;
  }
  return use_in_thread;
}

}  // namespace stallwatch::emit
