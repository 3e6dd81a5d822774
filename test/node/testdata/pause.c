/* The pod sandbox's init process: sleeps until it is told to stop. Built with gcc -static by the node test. */
#include <signal.h>
#include <unistd.h>

static void stop(int sig) { _exit(sig == SIGTERM || sig == SIGINT ? 0 : 1); }

int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  for (;;) pause();
}
