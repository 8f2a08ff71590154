// Foreign loops: threads of a program that does not use stallwatch's
// scheduler (asyncio, Boost.Asio, libevent, Redis, libuv), watched as loops
// by libstallwatch-watch.so (src/watch/preload.cpp), which LD_PRELOAD puts
// in front of libc's waits.
//
// This side lives in libstallwatch.so and wires a thread to the same parts a
// stallwatch loop has (run() in src/runtime/ does the same for its loops):
// a LoopRecord, the emitter, the metrics endpoint and the watchdog. The
// preload library then stamps the record's slices itself, as core::Loop does
// for its own: a slice runs from a return out of the thread's loop wait to
// its next entry into it.
//
// C linkage, so the preload library finds them by plain names; exported from
// libstallwatch.so. NOT async-signal-safe: they allocate and lock, once per
// thread (begin, end) or once per process (unwatchable).
//
//   stallwatch::watch::WatchedThread t;
//   if (stallwatch_watch_thread_begin(caller_of_first_wait, &t)) { ... stamp t.record->slice ... }
//   ...
//   stallwatch_watch_thread_end(t.record);  // the thread exits
#pragma once

#include <atomic>
#include <cstdint>

#include "base/thread_state.hpp"
#include "core/loop_record.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch::watch {

// What the preload library needs to stamp a watched thread's slices.
struct WatchedThread {
  core::LoopRecord* record = nullptr;
  // The thread as reports name it: id 0, the thread's name (pthread_getname_np).
  const base::FiberIdentity* identity = nullptr;
  // libstallwatch's coarse clock (CLOCK_MONOTONIC, refreshed by the watchdog
  // each tick): a slice's end is stamped from it, with no clock read.
  const std::atomic<std::uint64_t>* coarse_clock = nullptr;
};

}  // namespace stallwatch::watch

extern "C" {
// Begins watching the calling thread as a loop: the first time in the process
// it reads the configuration (STALLWATCH_* variables), starts the emitter and
// the metrics endpoint and says in one line what it watches; then it claims a
// loop record, routes the loop's lines and tells the watchdog. False when the
// thread is not to be watched: the watch is off (STALLWATCH_WATCHDOG=off, a
// bad variable, said once), or the thread is stallwatch's own or its metrics
// server's (civetweb's), known by wait_caller (the return address of the
// thread's first wait) lying in their code, or by the thread's name: their
// threads are not the program's loops. The thread's first wait.
STALLWATCH_EXPORT bool stallwatch_watch_thread_begin(const void* wait_caller,
                                                     stallwatch::watch::WatchedThread* out) noexcept;
// Ends the watch of the calling thread, which begin_thread returned `record`
// for: its stall in progress is finished, its lines written. The thread, as it exits.
STALLWATCH_EXPORT void stallwatch_watch_thread_end(stallwatch::core::LoopRecord* record) noexcept;
// Says, in one line on the process's log, that the program waits in a way the
// watch cannot see (`how`: "io_uring", "a raw epoll_wait system call" …).
// Once per process; later calls write nothing. Any thread.
STALLWATCH_EXPORT void stallwatch_watch_unwatchable(const char* how) noexcept;
}
