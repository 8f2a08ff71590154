// The demo's endpoints: what each route does on the loop. Loop thread.
#pragma once

#include <cstdint>
#include <string>

#include "http.hpp"

namespace demo {

struct Response {
  int status = 200;
  std::string body;
};

// Runs the route and returns the response body. May park the fiber
// (sleep, offload, process) or, on purpose, stall the loop (cpu, block).
Response run_endpoint(const Route& route);

// Spins the CPU for ms milliseconds: the uncooperative CPU stall that the
// watchdog names in its report. Returns a checksum so the work is not
// optimised away. Also what /process runs in a child process.
std::uint64_t busy_compute(int ms);

// Sleeps ms milliseconds in usleep: the uncooperative blocking stall.
void blocking_sleep(int ms);

}  // namespace demo
