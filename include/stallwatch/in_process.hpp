// stallwatch/in_process.hpp — run CPU-heavy or crash-prone work in a child process.
//
// in_process(f, args...) runs f(args...) in a forked child and parks the
// calling fiber until the result comes back; the loop runs other fibers
// meanwhile, and a crash of f cannot take the service down. Loop thread,
// from a fiber.
//
//   int main() {
//     stallwatch::start_process_server();  // first thing: before any thread
//     return stallwatch::run([] {
//       std::uint64_t h = stallwatch::in_process(hash_file_contents, std::string("big.bin"));
//       return h != 0 ? 0 : 1;
//     });
//   }
//
// How it works: start_process_server() forks a small server process while
// the program is still single-threaded. Each call sends the server the
// address of f and the encoded arguments; the server forks a child of
// itself, which decodes the arguments, calls f, and sends the encoded result
// back. The server reaps every child (no zombies) and reports how it ended.
// Children are forks of that early, single-threaded snapshot, so no lock can
// be held in them by a thread that does not exist there (the watchdog, the
// in_thread pool, the metrics server run only in the parent).
//
// Rules for f:
//  - a plain function or a lambda without captures: it runs in the snapshot
//    taken at start_process_server(), so state the parent built later (heap
//    objects, globals set since, libraries loaded by dlopen since) is not
//    there. Pass what f needs as arguments.
//  - arguments and result: trivially copyable types (no pointers: they would
//    point into the parent's memory) or std::string, copied both ways.
//  - f may allocate, throw, crash or call exit: an exception comes back as
//    process_error carrying its what(); a crash or kill comes back as
//    process_error naming the signal ("killed by signal 11 (SIGSEGV)").
//  - f must not use stallwatch's loop (the child has none).
//  - the server and the children ignore SIGINT, so a Ctrl-C to the process
//    group lets the parent drain its calls; the server exits when the
//    parent has gone.
//  - a call given up (cancelled, or its fiber unwound by another error)
//    ends its child: SIGTERM, then SIGKILL one second later if f is still
//    running (it never returns, or ignores SIGTERM), and the server reaps
//    it. So does every call in flight when the parent ends.
// Needs Linux 5.3 or later for pidfd_open; on older kernels the server
// still works but runs one call at a time.
// If the server was not started before the first call, that call starts it;
// started from a multi-threaded process it works but loses the guarantee
// above, so call start_process_server() early in main.
// If the server dies (killed by hand or by the OOM killer), the calls running
// then fail with process_error, and the next call reaps it, logs how it
// ended and forks a replacement from the running process, as a late start
// would: the replacement keeps no loop, no watchdog and no descriptor but
// 0, 1 and 2 (and the server closes those above 2 at any start: f does not
// inherit the parent's files or sockets).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// The child threw, crashed, was killed, or exited before returning a result;
// or the fork server could not be reached. what() says which.
class STALLWATCH_EXPORT process_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Forks the in_process server. Call once, early in main, before creating
// threads; later calls do nothing. Throws std::system_error if it cannot.
// Any thread.
STALLWATCH_EXPORT void start_process_server();

namespace detail {

// Runs in the child: decodes the arguments, calls fn, writes the result.
using ProcessTrampoline = void (*)(std::uintptr_t fn, const char* args, std::size_t size, int out_fd);

// Sends a call to the server, parks until the child ends, and returns the
// encoded result or throws process_error. Loop thread.
STALLWATCH_EXPORT std::string call_in_process(ProcessTrampoline trampoline, std::uintptr_t fn, std::string args);
// Child side: sends the encoded result ('R') or an exception message ('E').
STALLWATCH_EXPORT void write_child_frame(int fd, char tag, const char* data, std::size_t size) noexcept;

template <class T>
inline constexpr bool process_value_v =
    std::is_same_v<T, std::string> || (std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>);

template <class T>
void encode_value(std::string& out, const T& value) {
  if constexpr (std::is_same_v<T, std::string>) {
    const std::uint64_t size = value.size();
    out.append(reinterpret_cast<const char*>(&size), sizeof size);
    out.append(value);
  } else {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
}

inline void need_bytes(const char* p, const char* end, std::size_t n) {
  if (static_cast<std::size_t>(end - p) < n) throw process_error("stallwatch: in_process: truncated value");
}

template <class T>
T decode_value(const char*& p, const char* end) {
  if constexpr (std::is_same_v<T, std::string>) {
    std::uint64_t size = 0;
    need_bytes(p, end, sizeof size);
    std::memcpy(&size, p, sizeof size);
    p += sizeof size;
    need_bytes(p, end, size);
    std::string value(p, size);
    p += size;
    return value;
  } else {
    T value;
    need_bytes(p, end, sizeof(T));
    std::memcpy(&value, p, sizeof(T));
    p += sizeof(T);
    return value;
  }
}

template <class R, class Fp, class... Args>
void process_trampoline(std::uintptr_t fn, const char* args, std::size_t size, int out_fd) {
  try {
    [[maybe_unused]] const char* p = args;  // unused when f takes no arguments
    [[maybe_unused]] const char* end = args + size;
    std::tuple<Args...> decoded{decode_value<Args>(p, end)...};  // braces: left to right
    auto* f = reinterpret_cast<Fp>(fn);
    std::string out;
    if constexpr (std::is_void_v<R>) {
      std::apply(f, std::move(decoded));
    } else {
      encode_value(out, std::apply(f, std::move(decoded)));
    }
    write_child_frame(out_fd, 'R', out.data(), out.size());
  } catch (const std::exception& e) {
    write_child_frame(out_fd, 'E', e.what(), std::strlen(e.what()));
  } catch (...) {
    static constexpr char message[] = "unknown exception (not derived from std::exception)";
    write_child_frame(out_fd, 'E', message, sizeof message - 1);
  }
}

}  // namespace detail

// Runs f(args...) in a child process and returns its result; see the rules
// above. Throws process_error, cancelled ("stallwatch: in_process:
// cancelled"; the child then runs to its end and its result is dropped),
// std::system_error, or not_on_loop off a loop. Loop thread.
template <class F, class... Args>
auto in_process(F f, Args&&... args) {
  auto* fp = +f;  // a function pointer: plain functions and capture-less lambdas
  using Fp = decltype(fp);
  static_assert(std::is_pointer_v<Fp> && std::is_function_v<std::remove_pointer_t<Fp>>,
                "in_process: f must be a function or a lambda without captures");
  using R = std::invoke_result_t<Fp, std::decay_t<Args>...>;
  static_assert(std::is_void_v<R> || detail::process_value_v<R>,
                "in_process: the result must be trivially copyable (no pointers) or std::string");
  static_assert((detail::process_value_v<std::decay_t<Args>> && ...),
                "in_process: arguments must be trivially copyable (no pointers) or std::string");

  std::string encoded;
  (detail::encode_value(encoded, static_cast<const std::decay_t<Args>&>(args)), ...);
  std::string result = detail::call_in_process(&detail::process_trampoline<R, Fp, std::decay_t<Args>...>,
                                               reinterpret_cast<std::uintptr_t>(fp), std::move(encoded));
  if constexpr (!std::is_void_v<R>) {
    const char* p = result.data();
    return detail::decode_value<R>(p, result.data() + result.size());
  }
}

}  // namespace v1
}  // namespace stallwatch
