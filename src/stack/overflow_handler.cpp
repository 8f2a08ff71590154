// Installs the stack-overflow handler: one alternate signal stack per thread
// that runs a loop, one SIGSEGV/SIGBUS handler per process. The handler itself
// lives in sigsafe/overflow_fault.cpp. NOT async-signal-safe.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <system_error>

#include "base/system_error.hpp"
#include "stack/mapping_budget.hpp"
#include "stack/sigsafe/overflow_fault.hpp"
#include "stack/stack_canary.hpp"
#include "stack/stack_pool.hpp"

namespace stallwatch::stack {
namespace {

// The handler writes one short line; 64 KiB also leaves room for a chained
// handler (a sanitizer's, a crash reporter's) that does more.
constexpr std::size_t min_altstack_bytes = 64 * 1024;

struct AltStack {
  void* mapping = nullptr;  // guard page + stack, ours to unmap; null if the thread had one already
  std::size_t mapping_bytes = 0;
  long mappings = 0;  // counted against the mapping budget
  int installs = 0;
};
thread_local AltStack tls_altstack;

std::size_t altstack_bytes() {
  long wanted = ::sysconf(_SC_SIGSTKSZ);
  const std::size_t bytes = std::max<std::size_t>(min_altstack_bytes, wanted > 0 ? static_cast<std::size_t>(wanted) : 0);
  return round_stack_bytes(bytes);
}

// Maps an alternate stack with a guard page below it and makes it this
// thread's signal stack. Keeps an alternate stack the thread already has.
void install_altstack(AltStack& alt) {
  stack_t current{};
  if (::sigaltstack(nullptr, &current) != 0) base::throw_errno(errno, "sigaltstack");
  if ((current.ss_flags & SS_DISABLE) == 0) return;

  const std::size_t page = page_size();
  const std::size_t bytes = altstack_bytes();
  void* mapping = ::mmap(nullptr, page + bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) base::throw_errno(errno, "mmap signal stack");
  long mappings = 1;
  if (::mprotect(mapping, page, PROT_NONE) == 0) mappings = 2;

  stack_t next{};
  next.ss_sp = static_cast<char*>(mapping) + page;
  next.ss_size = bytes;
  next.ss_flags = 0;
  if (::sigaltstack(&next, nullptr) != 0) {
    const int error = errno;
    ::munmap(mapping, page + bytes);
    base::throw_errno(error, "sigaltstack");
  }
  reserve_mappings_unchecked(mappings);
  alt.mapping = mapping;
  alt.mapping_bytes = page + bytes;
  alt.mappings = mappings;
}

void remove_altstack(AltStack& alt) {
  if (alt.mapping == nullptr) return;
  stack_t disable{};
  disable.ss_flags = SS_DISABLE;
  ::sigaltstack(&disable, nullptr);
  ::munmap(alt.mapping, alt.mapping_bytes);
  return_mappings(alt.mappings);
  alt.mapping = nullptr;
}

// The page a switch stores into when it finds a fiber's canary overwritten
// (stack_canary.hpp). Never unmapped.
void map_canary_tripwire() {
  void* page = ::mmap(nullptr, page_size(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (page == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "stallwatch: mmap the canary tripwire");
  reserve_mappings_unchecked(1);
  canary_tripwire = static_cast<char*>(page);
  sigsafe::fault_chain.canary_tripwire = reinterpret_cast<std::uintptr_t>(page);
}

void install_fault_handler() {
  sigsafe::fault_chain.page_size = page_size();
  map_canary_tripwire();
  struct sigaction action {};
  action.sa_sigaction = &sigsafe::on_fault;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSEGV, &action, &sigsafe::fault_chain.previous_segv) != 0 ||
      ::sigaction(SIGBUS, &action, &sigsafe::fault_chain.previous_bus) != 0) {
    base::throw_errno(errno, "sigaction SIGSEGV/SIGBUS");
  }
}

}  // namespace

void install_overflow_handler_for_thread() {
  static std::once_flag handler_installed;
  std::call_once(handler_installed, install_fault_handler);
  AltStack& alt = tls_altstack;
  if (alt.installs++ > 0) return;
  try {
    install_altstack(alt);
  } catch (...) {
    --alt.installs;
    throw;
  }
}

void remove_overflow_handler_for_thread() {
  AltStack& alt = tls_altstack;
  if (alt.installs == 0 || --alt.installs > 0) return;
  remove_altstack(alt);
}

}  // namespace stallwatch::stack
