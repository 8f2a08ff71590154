// may run in a signal handler: no malloc, locks or exceptions.
//
// Everything here runs on the thread's alternate signal stack, inside the
// SIGSEGV/SIGBUS handler: only write(2), sigaction(2) and raise(3).
#include "stack/sigsafe/overflow_fault.hpp"

#include <ucontext.h>
#include <unistd.h>

#include <cstdint>

#include "base/thread_state.hpp"

namespace stallwatch::stack::sigsafe {

FaultChain fault_chain{};

namespace {

// A fixed buffer with bounded appends. Async-signal-safe.
class Line {
 public:
  void append(const char* text, std::size_t len) {
    for (std::size_t i = 0; i < len && used_ < sizeof(buf_); ++i) buf_[used_++] = text[i];
  }
  void append(const char* text) {
    while (*text != '\0' && used_ < sizeof(buf_)) buf_[used_++] = *text++;
  }
  void append_decimal(std::uint64_t value) {
    char digits[20];
    std::size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (n > 0 && used_ < sizeof(buf_)) buf_[used_++] = digits[--n];
  }
  // Writes the line to stderr, retrying short writes. Async-signal-safe.
  void write_to_stderr() const {
    std::size_t done = 0;
    while (done < used_) {
      const ssize_t n = ::write(STDERR_FILENO, buf_ + done, used_ - done);
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  char buf_[512];
  std::size_t used_ = 0;
};

// The stack pointer of the interrupted context; 0 where this file does not
// know the machine's register layout (that check is then skipped).
// Async-signal-safe.
std::uintptr_t interrupted_stack_pointer(const ucontext_t* context) {
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(context->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(context->uc_mcontext.sp);
#else
  (void)context;
  return 0;
#endif
}

// Fiber names are cut here so the line stays one line of bounded length.
constexpr std::size_t max_name_bytes = 200;

// True when addr lies in the page just below the running fiber's stack.
// Async-signal-safe.
bool is_guard_page_fault(std::uintptr_t addr) {
  const base::FiberIdentity* fiber = base::tls_thread_state.fiber;
  if (fiber == nullptr || fiber->id == 0 || fiber->stack_lo == 0 || fiber->stack_hi == 0) return false;
  const std::uintptr_t lo = fiber->stack_lo;
  return addr < lo && addr >= lo - fault_chain.page_size;
}

// The "stallwatch: stack overflow in fiber ..." line, for every way an
// overflow is found. Async-signal-safe.
void write_overflow_message(const base::FiberIdentity& fiber) {
  Line line;
  line.append("stallwatch: stack overflow in fiber ");
  line.append_decimal(fiber.id);
  line.append(" \"");
  if (fiber.name != nullptr) {
    const std::size_t len = fiber.name_len < max_name_bytes ? fiber.name_len : max_name_bytes;
    for (std::size_t i = 0; i < len; ++i) {
      const char c = fiber.name[i];
      // Keep the message on one line and its quotes balanced.
      line.append(c == '"' || c == '\n' || c == '\r' ? "?" : &c, 1);
    }
  }
  line.append("\" (stack ");
  line.append_decimal((fiber.stack_hi - fiber.stack_lo) / 1024);
  line.append(" KiB); raise STALLWATCH_STACK_KB\n");
  line.write_to_stderr();
}

// True when addr is in the canary tripwire page while a fiber runs.
// Async-signal-safe.
bool is_canary_trip(std::uintptr_t addr) {
  const base::FiberIdentity* fiber = base::tls_thread_state.fiber;
  const std::uintptr_t tripwire = fault_chain.canary_tripwire;
  return fiber != nullptr && fiber->id != 0 && tripwire != 0 && addr >= tripwire &&
         addr < tripwire + fault_chain.page_size;
}

// True when the running fiber's stack pointer lies below its stack and the
// fault is at that stack pointer (a push, a call, a frame's first store):
// a fiber on a stack without a guard page ran past its end, through the
// writable memory below, into memory that is not. Async-signal-safe.
bool ran_off_fiber_stack(std::uintptr_t addr, void* ucontext) {
  const base::FiberIdentity* fiber = base::tls_thread_state.fiber;
  if (fiber == nullptr || fiber->id == 0 || fiber->stack_lo == 0 || ucontext == nullptr) return false;
  const std::uintptr_t sp = interrupted_stack_pointer(static_cast<const ucontext_t*>(ucontext));
  if (sp == 0 || sp >= fiber->stack_lo) return false;
  constexpr std::uintptr_t near = 64 * 1024;  // a frame's first store lands this close to the pointer
  return addr + near >= sp && addr <= sp + near;
}

// Restores the default action; a fault the kernel raised then repeats and
// kills the process, a signal sent with kill(2) is raised again. Async-signal-safe.
void die_by_default_action(int signo, const siginfo_t* info) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(signo, &dfl, nullptr);
  if (info == nullptr || info->si_code <= 0) ::raise(signo);
}

// Async-signal-safe (as safe as the handler we chain to).
void chain(int signo, siginfo_t* info, void* ucontext) {
  const struct sigaction& previous = signo == SIGBUS ? fault_chain.previous_bus : fault_chain.previous_segv;
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(signo, info, ucontext);
    return;
  }
  if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
    die_by_default_action(signo, info);
    return;
  }
  previous.sa_handler(signo);
}

}  // namespace

void on_fault(int signo, siginfo_t* info, void* ucontext) {
  if (info != nullptr && info->si_code > 0 &&
      (is_guard_page_fault(reinterpret_cast<std::uintptr_t>(info->si_addr)) ||
       is_canary_trip(reinterpret_cast<std::uintptr_t>(info->si_addr)) ||
       ran_off_fiber_stack(reinterpret_cast<std::uintptr_t>(info->si_addr), ucontext))) {
    write_overflow_message(*base::tls_thread_state.fiber);
    die_by_default_action(signo, info);
    return;
  }
  chain(signo, info, ucontext);
}

}  // namespace stallwatch::stack::sigsafe
