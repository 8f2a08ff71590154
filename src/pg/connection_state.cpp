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

std::string_view sqlstate_of(const PGresult* res) {
  const char* v = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  return v != nullptr ? v : "";
}

// The prepared statement a run named is gone from the session (26000: DISCARD
// ALL, DEALLOCATE), or its cached plan no longer fits its tables (0A000,
// "cached plan must not change result type"). Either way the server refused
// the run; in an implicit transaction nothing of it stays.
bool is_stale_statement(const PGresult* res) {
  const std::string_view state = sqlstate_of(res);
  return state == "26000" || state == "0A000";
}

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

ConnectionState::ConnectionState(PGconn* conn, std::string description, const ConnectOptions& options)
    : conn_(conn),
      fd_(PQsocket(conn)),
      description_(std::move(description)),
      statements_(options),
      stats_(&this_loop_pg_stats()) {
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
  bool ok = close_statements();
  while (ok && !unsent_.empty()) {
    std::shared_ptr<Request> req = std::move(unsent_.front());
    unsent_.pop_front();
    if (req->abandoned) continue;  // its fiber left before it went out
    ok = send(std::move(req)) && close_statements();
  }
  if (corked && !broken_) cork(false);
}

bool ConnectionState::close_statements() {
  for (const std::string& name : statements_.take_to_close()) {
    // Nobody waits for it: a DEALLOCATE the server refuses (in a transaction
    // already failed) leaves one statement behind on the server, no more.
    auto req = std::make_shared<Request>();
    req->sql = "DEALLOCATE " + name;  // the library's own name: nothing to quote
    req->unprepared = true;
    if (!send(std::move(req))) return false;
  }
  return true;
}

bool ConnectionState::send(std::shared_ptr<Request> req) {
  values_.clear();
  types_.clear();
  for (const Param& p : req->params) {
    values_.push_back(p.text ? p.text->c_str() : nullptr);
    types_.push_back(p.oid);
  }
  const int n = static_cast<int>(values_.size());
  StatementCache::Plan plan;
  if (!req->unprepared) {
    req->key = statement_key(req->sql, req->params);
    plan = statements_.plan(req->key);
  }
  bool sent = false;
  if (plan.kind == StatementCache::Plan::unnamed) {
    sent = PQsendQueryParams(conn_, req->sql.c_str(), n, types_.data(), values_.data(), nullptr, nullptr, 0) == 1;
  } else {
    req->statement = std::move(plan.name);
    if (plan.kind == StatementCache::Plan::prepare_and_run) {
      req->parsing = PQsendPrepare(conn_, req->statement.c_str(), req->sql.c_str(), n, types_.data()) == 1;
      // Refused: the cache hears of it as of a Parse the server refused.
      if (!req->parsing) statements_.parsed(req->key, req->statement, false);
    }
    sent = (plan.kind == StatementCache::Plan::run_prepared || req->parsing) &&
           PQsendQueryPrepared(conn_, req->statement.c_str(), n, values_.data(), nullptr, nullptr, 0) == 1;
  }
  if (!sent) {
    // Refused before it went out: this query fails, the connection may not.
    req->failure = one_line(PQerrorMessage(conn_));
    if (PQstatus(conn_) == CONNECTION_BAD) {
      req->done.set();
      fail(req->failure);
      return false;
    }
    if (!req->parsing) {
      req->done.set();
      return true;
    }
    // Its Parse went out: the query waits for the Parse's answer and Sync,
    // and fails then with this reason.
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
    learn_from(req, res);
    if (std::exchange(req.parsing, false) && !is_error(res)) {
      PQclear(res);  // the Parse's; the run's result comes next
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

void ConnectionState::learn_from(Request& req, const PGresult* res) {
  if (req.parsing) {
    statements_.parsed(req.key, req.statement, !is_error(res));
    return;
  }
  if (!req.statement.empty() && is_stale_statement(res)) {
    // A cached plan that no longer fits is still on the server: close it.
    statements_.forget(req.key, req.statement, sqlstate_of(res) == "0A000");
    write_needed_.set();
    return;
  }
  if (PQresultStatus(res) == PGRES_COMMAND_OK) {
    const std::string_view tag = PQcmdStatus(const_cast<PGresult*>(res));
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") statements_.clear();
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
  const Clock::time_point started = Clock::now();
  std::shared_ptr<Request> req = run(deadline, sql, std::move(params), started, false);
  if (!req->statement.empty() && req->result != nullptr && is_stale_statement(req->result)) {
    // The statement the cache prepared went stale under this run: the query
    // is sent again as its SQL, once, as it would have run without the cache.
    // In a transaction block the server refuses the second run (25P02), and
    // the first error is the one that tells why.
    std::shared_ptr<Request> again = run(deadline, sql, std::move(req->params), started, true);
    if (again->result == nullptr || sqlstate_of(again->result) != "25P02") req = std::move(again);
  }
  stats_->queries.add();
  stats_->query_duration.record(elapsed_ns(started));
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

std::shared_ptr<Request> ConnectionState::run(Deadline deadline, std::string_view sql, std::vector<Param> params,
                                              Clock::time_point started, bool unprepared) {
  if (broken_) {
    throw error("stallwatch: pg query \"" + short_sql(sql) + "\" on " + description_ +
                    " failed: the connection is broken: " + broken_reason_,
                "", broken_reason_, "", description_);
  }
  auto req = std::make_shared<Request>();
  req->sql = sql;
  req->params = std::move(params);
  req->unprepared = unprepared;
  unsent_.push_back(req);
  write_needed_.set();
  try {
    req->done.wait(deadline);
  } catch (const deadline_exceeded&) {
    req->abandoned = true;
    cancel_front_if_abandoned();
    stats_->queries.add();
    stats_->query_duration.record(elapsed_ns(started));
    core::throw_operation_deadline_exceeded("pg query \"" + short_sql(sql) + "\" on " + description_,
                                            deadline.at - started);
  } catch (const cancelled&) {
    req->abandoned = true;
    cancel_front_if_abandoned();
    core::throw_operation_cancelled("pg query \"" + short_sql(sql) + "\" on " + description_);
  }
  return req;
}

}  // namespace stallwatch::inline v1::pg::detail
