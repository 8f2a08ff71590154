#include "emit/advice.hpp"

#include "config/probed_functions.hpp"

namespace stallwatch::emit {

std::string_view advice_for(std::string_view function) noexcept {
  const config::ProbedFunction* probed = config::find_probed(function);
  switch (probed ? probed->instead : config::Instead::in_thread) {
    case config::Instead::curl_or_http:
      return "use stallwatch::curl::perform or stallwatch::http (the fiber parks, the loop runs on)";
    case config::Instead::resolve:
      return "use stallwatch::resolve, stallwatch's DNS (or TcpStream::connect with a host name)";
    case config::Instead::sleep_for:
      return "use stallwatch::sleep_for (or sleep_until)";
    case config::Instead::run_process:
      return "use stallwatch::run_process";
    // std::future::get, std::condition_variable and the other standard waits
    // reach the kernel as futex and pthread_cond_* calls.
    case config::Instead::future:
      return "wait on a stallwatch::Future, or run the blocking wait with stallwatch::in_thread";
    case config::Instead::pg:
      return "use stallwatch::pg (a cooperative PostgreSQL client)";
    case config::Instead::in_thread:
      break;
  }
  return "run the call with stallwatch::in_thread (the fiber parks, a pool thread blocks)";
}

}  // namespace stallwatch::emit
