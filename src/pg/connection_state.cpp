// ConnectionState: queries, the reader and writer fibers, cancellation.
#include "pg/connection_state.hpp"

#include <poll.h>

#include <chrono>
#include <utility>

#include "core/parking.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"

namespace stallwatch::inline v1::pg::detail {

namespace {

bool is_error(const PGresult* res) {
  const ExecStatusType st = PQresultStatus(res);
  return st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED || st == PGRES_BAD_RESPONSE ||
         st == PGRES_NONFATAL_ERROR;
}

// True when the socket holds bytes libpq has not read yet: libpq reads one
// buffer's worth per PQconsumeInput, and the reactor's readiness is
// edge-triggered, so bytes left behind raise no new edge. A zero-timeout poll
// does not block.
bool socket_has_more(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

std::uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

void ignore_notice(void*, const PGresult*) {}

}  // namespace

std::string one_line(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return s;
}

std::string short_sql(std::string_view sql) {
  std::string s(sql.substr(0, 80));
  for (char& c : s) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  if (sql.size() > 80) s += "…";
  return s;
}

std::string describe(const PGconn* conn) {
  auto field = [](const char* v) { return std::string(v != nullptr && *v != '\0' ? v : "?"); };
  return "host=" + field(PQhost(conn)) + " port=" + field(PQport(conn)) + " dbname=" + field(PQdb(conn)) +
         " user=" + field(PQuser(conn));
}

void throw_result_error(const PGresult* res, std::string_view sql, const std::string& connection) {
  auto field = [res](int code) {
    const char* v = PQresultErrorField(res, code);
    return std::string(v != nullptr ? v : "");
  };
  std::string sqlstate = field(PG_DIAG_SQLSTATE);
  std::string message = field(PG_DIAG_MESSAGE_PRIMARY);
  std::string detail = field(PG_DIAG_MESSAGE_DETAIL);
  if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) message = "not run: an earlier query of its pipeline failed";
  if (message.empty()) message = one_line(PQresultErrorMessage(res));
  std::string what = "stallwatch: pg query \"" + short_sql(sql) + "\" on " + connection + " failed: " + message;
  if (!sqlstate.empty()) what += " (SQLSTATE " + sqlstate + ")";
  if (!detail.empty()) what += "; DETAIL: " + detail;
  throw error(what, std::move(sqlstate), std::move(message), std::move(detail), connection);
}

ConnectionState::ConnectionState(PGconn* conn, std::string description)
    : conn_(conn), fd_(PQsocket(conn)), description_(std::move(description)), stats_(&this_loop_pg_stats()) {
  PQsetNoticeReceiver(conn_, &ignore_notice, nullptr);
  if (PQsetnonblocking(conn_, 1) != 0 || PQenterPipelineMode(conn_) != 1) {
    broken_ = true;
    broken_reason_ = one_line(PQerrorMessage(conn_));
  }
}

ConnectionState::~ConnectionState() {
  forget_fd(fd_);
  PQfinish(conn_);
}

void ConnectionState::start() {
  if (broken_) return;
  auto self = shared_from_this();
  reader_ = spawn([self] { self->read_loop(); }, "pg reader");
  writer_ = spawn([self] { self->write_loop(); }, "pg writer");
}

void ConnectionState::close() {
  fail("the connection was closed");
  reader_.cancel();
  writer_.cancel();
  // Detached: each lets go of this state as it ends, the last closes the PGconn.
  reader_ = {};
  writer_ = {};
}

void ConnectionState::read_loop() {
  try {
    while (!broken_) {
      wait_readable(fd_);
      if (!consume()) return;
    }
  } catch (const cancelled&) {
  }
}

void ConnectionState::write_loop() {
  try {
    for (;;) {
      flush_needed_.wait();
      flush_needed_.clear();
      while (!broken_) {
        const int r = PQflush(conn_);
        if (r == 0) break;
        if (r < 0) {
          fail(one_line(PQerrorMessage(conn_)));
          return;
        }
        wait_writable(fd_);
      }
    }
  } catch (const cancelled&) {
  }
}

bool ConnectionState::consume() {
  do {
    const bool read = PQconsumeInput(conn_) == 1;
    // What arrived before a failure still belongs to its queries (the
    // server's FATAL message as it shuts down).
    take_notifications();
    dispatch_results();
    if (!read || PQstatus(conn_) == CONNECTION_BAD) {
      fail(one_line(PQerrorMessage(conn_)));
      return false;
    }
  } while (socket_has_more(fd_));
  return true;
}

void ConnectionState::dispatch_results() {
  int null_results_in_a_row = 0;
  while (!pending_.empty() && PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    Request& req = *pending_.front();
    if (res == nullptr) {
      // The end of the query's results; its Sync comes next. Two in a row
      // mean libpq has nothing more until input arrives.
      if (++null_results_in_a_row > 1) break;
      continue;
    }
    null_results_in_a_row = 0;
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      complete_front();
      continue;
    }
    // A single statement has one result; keep an error over anything else.
    if (req.result == nullptr || (is_error(res) && !is_error(req.result))) {
      PQclear(std::exchange(req.result, res));
    } else {
      PQclear(res);
    }
  }
}

void ConnectionState::complete_front() {
  std::shared_ptr<Request> req = std::move(pending_.front());
  pending_.pop_front();
  if (!req->abandoned) req->done.set();
  cancel_front_if_abandoned();
}

void ConnectionState::take_notifications() {
  while (PGnotify* n = PQnotifies(conn_)) {
    Notification note{n->relname != nullptr ? n->relname : "", n->extra != nullptr ? n->extra : "", n->be_pid};
    PQfreemem(n);
    if (!notifications_.try_send(note)) ++notifications_dropped_;
  }
}

void ConnectionState::fail(const std::string& reason) {
  if (!broken_) {
    broken_ = true;
    broken_reason_ = reason;
    // libpq closes the socket as it finds the connection lost, and the next
    // socket opened (a new connection's) may take its number: the reactor
    // must not keep watching that number for this connection. Forgetting it
    // drops the fibers' waits on it, so they are cancelled and end.
    forget_fd(std::exchange(fd_, -1));
    reader_.cancel();
    writer_.cancel();
  }
  for (auto& req : pending_) {
    if (req->failure.empty()) req->failure = reason;
    req->done.set();
  }
  pending_.clear();
  notifications_.close();
  flush_needed_.set();  // the writer sees the broken connection and ends
}

void ConnectionState::cancel_front_if_abandoned() {
  if (pending_.empty() || broken_) return;
  Request& front = *pending_.front();
  if (!front.abandoned || front.cancel_sent) return;
  front.cancel_sent = true;
  // Only the query the server runs now is cancelled: one queued behind
  // others is cancelled when it reaches the front. libpq 15's PQcancel
  // connects and waits for the server: an in_thread pool thread runs it, from
  // a fiber of its own so the abandoning fiber returns at its deadline.
  PGcancel* cancel = PQgetCancel(conn_);
  if (cancel == nullptr) return;
  spawn(
      [cancel] {
        in_thread([cancel] {
          char errbuf[256];
          PQcancel(cancel, errbuf, sizeof errbuf);
          PQfreeCancel(cancel);
        });
      },
      "pg cancel");
}

void ConnectionState::need_flush() {
  const int r = PQflush(conn_);
  if (r == 1) flush_needed_.set();
  if (r < 0) fail(one_line(PQerrorMessage(conn_)));
}

Result ConnectionState::query(Deadline deadline, std::string_view sql, std::vector<Param> params) {
  // The Connection may be closed and dropped while this fiber waits: the
  // state outlives the wait.
  const std::shared_ptr<ConnectionState> self = shared_from_this();
  if (broken_) {
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ +
                    " failed: the connection is broken: " + broken_reason_,
                "", broken_reason_, "", description_);
  }
  const Clock::time_point started = Clock::now();
  std::vector<const char*> values(params.size());
  std::vector<Oid> types(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].text ? params[i].text->c_str() : nullptr;
    types[i] = params[i].oid;
  }
  const std::string text(sql);
  if (PQsendQueryParams(conn_, text.c_str(), static_cast<int>(params.size()), types.data(), values.data(), nullptr,
                        nullptr, 0) != 1) {
    const std::string reason = one_line(PQerrorMessage(conn_));
    if (PQstatus(conn_) == CONNECTION_BAD) fail(reason);
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ + " failed: " + reason, "",
                reason, "", description_);
  }
  if (PQpipelineSync(conn_) != 1) {
    // The query went out without its Sync: the pipeline cannot be trusted.
    const std::string reason = one_line(PQerrorMessage(conn_));
    fail(reason);
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ + " failed: " + reason, "",
                reason, "", description_);
  }
  auto req = std::make_shared<Request>();
  req->sql = text;
  pending_.push_back(req);
  need_flush();

  LoopPgStats& stats = *stats_;
  try {
    req->done.wait(deadline);
  } catch (const deadline_exceeded&) {
    req->abandoned = true;
    cancel_front_if_abandoned();
    stats.queries.add();
    stats.query_duration.record(elapsed_ns(started));
    core::throw_operation_deadline_exceeded("pg query \"" + short_sql(sql) + "\" on " + description_,
                                            deadline.at - started);
  } catch (const cancelled&) {
    req->abandoned = true;
    cancel_front_if_abandoned();
    core::throw_operation_cancelled("pg query \"" + short_sql(sql) + "\" on " + description_);
  }
  stats.queries.add();
  stats.query_duration.record(elapsed_ns(started));
  if (!req->failure.empty() && req->result == nullptr) {
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ + " failed: " + req->failure,
                "", req->failure, "", description_);
  }
  if (req->result == nullptr) {
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ + " failed: no result", "",
                "no result", "", description_);
  }
  if (is_error(req->result)) throw_result_error(req->result, sql, description_);
  return Result(std::shared_ptr<pg_result>(std::exchange(req->result, nullptr), &PQclear));
}

}  // namespace stallwatch::inline v1::pg::detail
