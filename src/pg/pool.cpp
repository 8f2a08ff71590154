// pg::Pool: up to n connections of one loop, each query on the least busy.
#include <algorithm>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/parking.hpp"
#include "pg/connection_state.hpp"
#include "pg/statement_cache.hpp"
#include "pg/stats.hpp"
#include "stallwatch/pg.hpp"

namespace stallwatch::inline v1::pg {

namespace detail {

class PoolState : public std::enable_shared_from_this<PoolState> {
 public:
  PoolState(std::string conninfo, int size, int depth, ConnectOptions options)
      : conninfo_(std::move(conninfo)),
        options_(std::move(options)),
        max_(size < 1 ? 1 : size),
        slots_(static_cast<std::size_t>(max_) * static_cast<std::size_t>(depth < 1 ? 1 : depth)),
        stats_(&this_loop_pg_stats()) {
    check(options_);
  }

  ~PoolState() {
    for (auto& open : open_) {
      if (open->users > 0) stats_->add_pool_in_use(-1);
    }
    stats_->add_pool_size(-static_cast<std::int64_t>(open_.size()));
  }

  Result query(Deadline deadline, std::string_view sql, std::vector<Param> params) {
    // A Pool dropped while its queries wait (an error unwound its owner):
    // the state lives until they end.
    const std::shared_ptr<PoolState> self = shared_from_this();
    const auto name = [&] { return "pg pool query \"" + short_sql(sql) + "\" waiting for a connection"; };
    core::as_operation(name, deadline, [&] {
      if (slots_.try_acquire()) return;
      ++waits_;
      stats_->pool_waits.add();
      slots_.acquire(deadline);
    });
    struct SlotRelease {
      Semaphore& slots;
      ~SlotRelease() { slots.release(); }
    } slot_release{slots_};

    Open* open = core::as_operation(name, deadline, [&] {
      try {
        return pick(deadline);
      } catch (const error& e) {
        // A failed connect names the query it was opened for.
        throw error("stallwatch: pg pool query \"" + short_sql(sql) + "\": " + e.what(), e.sqlstate(), e.message(),
                    e.detail(), e.connection());
      }
    });
    if (open->users++ == 0) stats_->add_pool_in_use(1);
    struct Leave {
      PoolState& pool;
      Open* open;
      ~Leave() { pool.leave(open); }
    } leave{*this, open};
    return open->conn.query_params(deadline, sql, std::move(params));
  }

  int size() const noexcept { return static_cast<int>(open_.size()); }
  int in_use() const noexcept {
    return static_cast<int>(std::count_if(open_.begin(), open_.end(), [](const auto& o) { return o->users > 0; }));
  }
  std::uint64_t waits() const noexcept { return waits_; }

 private:
  struct Open {
    Connection conn;
    int users = 0;  // fibers with a query on it now
  };

  // The connection for the next query: an idle one, else a new one while
  // fewer than max_ are open or opening, else the least busy; with none
  // usable, waits until one opens or a broken one leaves room for a new one.
  Open* pick(Deadline deadline) {
    for (;;) {
      drop_broken();
      Open* best = nullptr;
      for (auto& o : open_) {
        if (o->conn.ok() && (best == nullptr || o->users < best->users)) best = o.get();
      }
      if (best != nullptr && best->users == 0) return best;
      if (static_cast<int>(open_.size()) + opening_ < max_) return open_one(deadline);
      if (best != nullptr) return best;
      changed_.wait(deadline);
    }
  }

  Open* open_one(Deadline deadline) {
    ++opening_;
    struct Opened {
      PoolState& pool;
      ~Opened() {
        --pool.opening_;
        pool.changed();  // whether it opened or failed
      }
    } opened{*this};
    open_.push_back(std::make_unique<Open>(Open{connect(conninfo_, deadline, options_)}));
    stats_->add_pool_size(1);
    return open_.back().get();
  }

  void leave(Open* open) {
    if (--open->users == 0) stats_->add_pool_in_use(-1);
    drop_broken();
  }

  // A connection that broke goes once no fiber uses it; the next query that
  // needs one opens its replacement.
  void drop_broken() {
    const auto gone = std::remove_if(open_.begin(), open_.end(),
                                     [](const auto& o) { return !o->conn.ok() && o->users == 0; });
    if (gone == open_.end()) return;
    stats_->add_pool_size(-static_cast<std::int64_t>(open_.end() - gone));
    open_.erase(gone, open_.end());
    changed();  // room for a new connection
  }

  // Fibers waiting in pick() look again.
  void changed() {
    changed_.set();
    changed_.clear();
  }

  std::string conninfo_;
  ConnectOptions options_;
  int max_;
  Semaphore slots_;  // max_ × pipeline depth queries at once
  Event changed_;  // a connection opened, failed to open, or left
  int opening_ = 0;
  std::uint64_t waits_ = 0;
  std::vector<std::unique_ptr<Open>> open_;
  LoopPgStats* stats_;
};

}  // namespace detail

Pool::Pool(std::string conninfo, int size, int pipeline_depth, ConnectOptions options)
    : state_(std::make_shared<detail::PoolState>(std::move(conninfo), size, pipeline_depth, std::move(options))) {}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&&) noexcept = default;
Pool::~Pool() = default;

Result Pool::query_params(Deadline deadline, std::string_view sql, std::vector<detail::Param> params) {
  if (!state_) throw std::logic_error("stallwatch: pg::Pool::query on a moved-from pool");
  return state_->query(deadline, sql, std::move(params));
}
int Pool::size() const noexcept { return state_->size(); }
int Pool::in_use() const noexcept { return state_->in_use(); }
std::uint64_t Pool::waits() const noexcept { return state_->waits(); }

}  // namespace stallwatch::inline v1::pg
