/* A libevent program that knows nothing of stallwatch: a persistent timer
 * ticks every 20 ms. On the third tick its callback waits 300 ms in a poll()
 * of its own (a library's private wait): a blocking call inside the slice,
 * which stallwatch-watch reports as `blocked in poll` without cutting that
 * poll short; the program checks that it lasted its full time.
 *
 *   stallwatch-watch -- stallwatch-watch-libevent */
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

static int ticks;
static int short_waits;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_tick(evutil_socket_t fd, short what, void* arg) {
  (void)fd;
  (void)what;
  struct event* self = arg;
  if (++ticks == 3) {
    const double start = now_ms();
    const int ready = poll(NULL, 0, 300); /* private wait: blocks the loop */
    if (ready != 0 || now_ms() - start < 299) ++short_waits;
  }
  if (ticks == 10) event_del(self);
}

int main(void) {
  struct event_base* base = event_base_new();
  struct event* timer = event_new(base, -1, EV_PERSIST, on_tick, event_self_cbarg());
  const struct timeval every = {0, 20000};
  event_add(timer, &every);
  event_base_dispatch(base);
  printf("%d ticks, %d waits cut short, backend %s\n", ticks, short_waits, event_base_get_method(base));
  event_free(timer);
  event_base_free(base);
  return short_waits == 0 ? 0 : 1;
}
