// stallwatch/errors.hpp — the typed errors stallwatch throws.
//
// Any thread may catch them. Example:
//
//   try {
//     event.wait(stallwatch::deadline_after(100ms));
//   } catch (const stallwatch::deadline_exceeded& e) {
//     log(e.what());   // "stallwatch: Event::wait: deadline exceeded"
//   }
#pragma once

#include <stdexcept>
#include <string>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// An option or environment variable holds a value stallwatch does not accept.
// what() names the variable, the value and what is accepted.
class STALLWATCH_EXPORT config_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A parking operation (join, wait, acquire, send, receive, lock, I/O wait)
// reached its deadline before it could complete. An operation made of
// several waits names itself and the deadline it was given, not the wait
// that ran out: "stallwatch: connect to 127.0.0.1:9: deadline exceeded after
// 500 ms", "stallwatch: run_process sleep: deadline exceeded after 100 ms".
class STALLWATCH_EXPORT deadline_exceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The fiber was cancelled (Task::cancel) while parked or before parking.
// what() names the call: "stallwatch: in_process: cancelled".
class STALLWATCH_EXPORT cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A stallwatch call that needs a running loop was made outside one. what()
// names the call made ("stallwatch: read_file called outside a fiber of a
// running loop"), not the one it goes through.
class STALLWATCH_EXPORT not_on_loop : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A loop-bound primitive (Semaphore, Event, Mutex, Channel) was used from a
// loop other than its own, or from a plain thread. what() names the call and
// both sides ("... belongs to loop 0, used from loop 1"). Use SharedChannel,
// Future or LoopHandle::post to cross loops.
class STALLWATCH_EXPORT wrong_loop : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Work was posted or submitted to a loop that has ended (or is ending: its
// main fiber returned). The work did not run.
class STALLWATCH_EXPORT loop_stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The Semaphore, Event, Mutex or Channel a fiber waited on was destroyed
// under it. what() names the call and the primitive.
class STALLWATCH_EXPORT primitive_destroyed : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace v1
}  // namespace stallwatch
