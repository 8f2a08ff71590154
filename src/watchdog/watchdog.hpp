// The watchdog's entry points for the top layer (src/runtime/), which tells it
// when a loop starts and ends. The rest of this folder is its own: see state.hpp.
#pragma once

#include "core/loop_record.hpp"
#include "stallwatch/config.hpp"

namespace stallwatch::watchdog {

// Called on the loop thread when its loop starts, before the first slice:
// claims the capture signal (capture_signal.hpp: `auto` chooses one and logs
// it once), installs per-thread state, and starts the watchdog thread if it
// is not running (unless config.watchdog is false). Throws config_error when
// the configured signal has a handler stallwatch did not install; nothing is
// left claimed then.
void loop_started(core::LoopRecord& record, const Config& config);
// Called on the loop thread as its loop ends; the watchdog thread stops when
// no loop is left, and the last loop using the capture signal puts back the
// disposition it found.
void loop_stopped(core::LoopRecord& record);

// Scope on a thread that forks a process which will run no loop (the
// in_process fork server, replaced from a loop thread): the child keeps none
// of the loops and starts no watchdog thread. Any thread.
class ForkWithoutLoops {
 public:
  ForkWithoutLoops();
  ~ForkWithoutLoops();
  ForkWithoutLoops(const ForkWithoutLoops&) = delete;
  ForkWithoutLoops& operator=(const ForkWithoutLoops&) = delete;
};

}  // namespace stallwatch::watchdog
