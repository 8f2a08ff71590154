/* An epoll loop that forks and execs under the watch. The parent's loop
 * forks twice: one child keeps running the loop (as Redis's BGSAVE child or a
 * pre-forking server does) and stalls there for 200 ms, then exits with 5;
 * the other execs `sh -c 'exit 7'`. The parent stalls 400 ms itself, reaps
 * both and exits with 0 when each child's status is its own: the watch
 * follows the forked loop (its report names child_stall), the exec'd shell
 * runs unharmed. (The parent's wait for its children comes after its last
 * loop wait, so it is a slice too, reported if the children take long.)
 *
 *   stallwatch-watch -- stallwatch-watch-fork-exec */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Computes for `ms` milliseconds, mostly in its own code (a sample taken
 * inside the vDSO's clock_gettime has no frames past it). */
static void spin_ms(int ms) {
  struct timespec start, now;
  volatile unsigned long x = 1;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    for (int i = 0; i < 100000; ++i) x = x * 6364136223846793005ul + 1442695040888963407ul;
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

/* The stalls, apart so that each report names whose it is (the empty asm
 * after the call keeps it from becoming a tail call, which leaves no frame). */
/* The parent's is longer: its watchdog may still be naming the frames of
 * the fork's own wait (the watchdog thread symbolizes between its ticks). */
__attribute__((noinline)) static void parent_stall(void) {
  spin_ms(400);
  __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void child_stall(void) {
  spin_ms(200);
  __asm__ volatile("" ::: "memory");
}

/* `turns` 20 ms turns of an epoll loop; on turn `stall_at` the turn calls `stall`. */
static void run_loop(int epfd, int turns, int stall_at, void (*stall)(void)) {
  struct epoll_event ev;
  for (int turn = 0; turn < turns; ++turn) {
    epoll_wait(epfd, &ev, 1, 20);
    if (turn == stall_at) stall();
  }
}

int main(void) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  run_loop(epfd, 10, -1, NULL);
  const pid_t looper = fork();
  if (looper == 0) {
    /* _exit runs no handler, so the child lives on for its report to be
     * written: a fork made while the watchdog was busy symbolizing gives the
     * child a fresh symbolizer, which first reads the debug info it needs. */
    run_loop(epfd, 40, 3, child_stall);
    _exit(5);
  }
  const pid_t shell = fork();
  if (shell == 0) {
    execl("/bin/sh", "sh", "-c", "exit 7", (char*)NULL);
    _exit(127);
  }
  run_loop(epfd, 10, 8, parent_stall);
  int looper_status = 0, shell_status = 0;
  waitpid(looper, &looper_status, 0);
  waitpid(shell, &shell_status, 0);
  const int ok = WIFEXITED(looper_status) && WEXITSTATUS(looper_status) == 5 && WIFEXITED(shell_status) &&
                 WEXITSTATUS(shell_status) == 7;
  printf("forked loop exited %d, exec'd shell exited %d\n", WEXITSTATUS(looper_status), WEXITSTATUS(shell_status));
  return ok ? 0 : 1;
}
