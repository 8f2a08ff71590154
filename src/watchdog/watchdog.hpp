// The watchdog's entry points for the scheduler. The watchdog thread itself,
// stack capture, symbolization and reporting live in this folder.
#pragma once

#include "core/loop_record.hpp"
#include "stallwatch/config.hpp"

namespace stallwatch::watchdog {

// Called on the loop thread when its loop starts, before the first slice:
// installs the capture handler and per-thread state, and starts the watchdog
// thread if it is not running (unless config.watchdog is false).
void loop_started(core::LoopRecord& record, const Config& config);
// Called on the loop thread as its loop ends; the watchdog thread stops when
// no loop is left.
void loop_stopped(core::LoopRecord& record);

}  // namespace stallwatch::watchdog
