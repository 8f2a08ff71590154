// The context switch: Boost.Context's jump_fcontext, entered so that the
// CPU's return-address predictor stays in step.
//
// jump_fcontext is reached with `call`, which pushes a return-stack-buffer
// entry, but it leaves through `jmp *%r8`, which pops none. Every switch
// therefore leaves the predictor one stale entry deep, and the resumed
// fiber's next `ret` (out of yield, park, join...) is mispredicted: that
// mispredict was more than half the cost of a yield (bench/, pingpong).
// Pushing the resume address by hand and entering with `jmp` keeps the
// predictor balanced: fibers that stopped at the same switch resume and
// return exactly as predicted.
#pragma once

#include <boost/context/detail/fcontext.hpp>

namespace stallwatch::core {

#if defined(__AVX512F__)
#define STALLWATCH_UPPER_VECTOR_CLOBBERS                                                                       \
  , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", \
      "xmm28", "xmm29", "xmm30", "xmm31"
#else
#define STALLWATCH_UPPER_VECTOR_CLOBBERS
#endif

// Switches to `to`, handing it `data`; returns when something switches back,
// with its context and data (as jump_fcontext does).
inline boost::context::detail::transfer_t jump_to(boost::context::detail::fcontext_t to, void* data) noexcept {
#if defined(__x86_64__) && defined(__linux__)
  void* from_context;
  void* from_data;
  // jump_fcontext saves and restores the callee-saved registers, so across
  // it only the caller-saved ones (and the x87 stack) are lost, as across a
  // call. r12 keeps the stack pointer: the 128-byte red zone is skipped and
  // the stack aligned as at a call, then restored on resumption.
  asm volatile(
      "movq %%rsp, %%r12\n\t"
      "leaq -128(%%rsp), %%rsp\n\t"
      "andq $-16, %%rsp\n\t"
      "leaq 1f(%%rip), %%rax\n\t"
      "pushq %%rax\n\t"
      "jmp jump_fcontext@PLT\n"
      "1:\n\t"
      "movq %%r12, %%rsp"
      : "=a"(from_context), "=d"(from_data), "+D"(to), "+S"(data)
      :
      : "rcx", "r8", "r9", "r10", "r11", "r12", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
        "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st",
        "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)" STALLWATCH_UPPER_VECTOR_CLOBBERS);
  return {from_context, from_data};
#else
  return boost::context::detail::jump_fcontext(to, data);
#endif
}

}  // namespace stallwatch::core
