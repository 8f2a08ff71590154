#include "base/thread_state.hpp"

namespace stallwatch::base {

constinit thread_local ThreadState tls_thread_state __attribute__((tls_model("initial-exec")));

}  // namespace stallwatch::base
