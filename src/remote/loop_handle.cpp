// LoopHandle's calls over the loop's inbox (core/remote_inbox.hpp).
#include <string>

#include "emit/emitter.hpp"
#include "core/loop.hpp"
#include "core/remote_inbox.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/loop_handle.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

void inbox_add_ref(RemoteInbox* inbox) noexcept { inbox->add_ref(); }
void inbox_release(RemoteInbox* inbox) noexcept { inbox->release(); }
int inbox_loop_index(const RemoteInbox* inbox) noexcept { return inbox->loop_index(); }
bool inbox_closed(const RemoteInbox* inbox) noexcept { return inbox->closed(); }

RemoteInbox* current_inbox() {
  RemoteInbox* inbox = core::Loop::require("this_loop").inbox();
  inbox->add_ref();
  return inbox;
}

void post_task(RemoteInbox* inbox, PostedTask* task) {
  if (inbox == nullptr) {
    task->release();
    throw std::logic_error("stallwatch: post or submit on an empty LoopHandle (take one with this_loop())");
  }
  if (core::Loop::forked_copy() != nullptr) [[unlikely]] {
    task->release();
    core::Loop::throw_in_forked_child("LoopHandle::post");  // the parent's loop would never see it
  }
  if (inbox->push_post(&task->node)) return;
  task->release();
  throw loop_stopped("stallwatch: post to loop " + std::to_string(inbox->loop_index()) +
                     ", which has stopped (its main fiber returned): the work was not run");
}

void report_refused_post(std::exception_ptr why) noexcept {
  std::string what = "non-standard exception";
  try {
    std::rethrow_exception(why);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  const core::Loop* loop = core::Loop::current();
  emit::message(loop != nullptr ? loop->record().index : emit::process_wide, "post_not_run",
                "a posted call was not run: " + what, {{"what", what}});
}

}  // namespace detail

LoopHandle this_loop() { return LoopHandle(detail::current_inbox()); }

}  // namespace v1
}  // namespace stallwatch
