// ConnectionState: queries, the reader and writer fibers, cancellation.
#include "pg/connection_state.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

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
      write_needed_.wait();
      write_needed_.clear();
      send_queued();
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

void ConnectionState::send_queued() {
  // libpq 15 sends each Sync as it is written (PQpipelineSync flushes): the
  // corked socket holds the queries back until the last, so the server gets
  // them in one packet and wakes once for all.
  const bool corked = unsent_.size() > 1 && cork(true);
  while (!unsent_.empty() && !broken_) {
    std::shared_ptr<Request> req = std::move(unsent_.front());
    unsent_.pop_front();
    if (req->abandoned) continue;  // its fiber left before it went out
    if (!send(std::move(req))) break;
  }
  if (corked && !broken_) cork(false);
}

bool ConnectionState::send(std::shared_ptr<Request> req) {
  values_.clear();
  types_.clear();
  for (const Param& p : req->params) {
    values_.push_back(p.text ? p.text->c_str() : nullptr);
    types_.push_back(p.oid);
  }
  if (PQsendQueryParams(conn_, req->sql.c_str(), static_cast<int>(values_.size()), types_.data(), values_.data(),
                        nullptr, nullptr, 0) != 1) {
    // Refused before it went out: this query fails, the connection may not.
    req->failure = one_line(PQerrorMessage(conn_));
    req->done.set();
    if (PQstatus(conn_) != CONNECTION_BAD) return true;
    fail(req->failure);
    return false;
  }
  pending_.push_back(std::move(req));
  if (PQpipelineSync(conn_) != 1) {
    // The query went out without its Sync: the pipeline cannot be trusted.
    fail(one_line(PQerrorMessage(conn_)));
    return false;
  }
  return true;
}

bool ConnectionState::cork(bool on) {
  if (!corkable_) return false;
  const int value = on ? 1 : 0;
  if (::setsockopt(fd_, IPPROTO_TCP, TCP_CORK, &value, sizeof value) == 0) return true;
  corkable_ = false;
  return false;
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
  for (auto* queue : {&pending_, &unsent_}) {
    for (auto& req : *queue) {
      if (req->failure.empty()) req->failure = reason;
      req->done.set();
    }
    queue->clear();
  }
  notifications_.close();
  write_needed_.set();  // the writer sees the broken connection and ends
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
  auto req = std::make_shared<Request>();
  req->sql = sql;
  req->params = std::move(params);
  unsent_.push_back(req);
  write_needed_.set();

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
