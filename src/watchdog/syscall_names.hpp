// Names of Linux system calls by number, for "blocked in <syscall>".
#pragma once

#include <string>

namespace stallwatch::watchdog {

// The name of system call nr on this architecture (x86_64 table: the calls a
// thread commonly blocks in, and the common others), or "syscall <nr>" when the
// table does not know it. Any thread.
std::string syscall_name(long nr);

}  // namespace stallwatch::watchdog
