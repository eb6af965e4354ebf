/* The testbed node's pod sandbox process (containerd's sandbox_image): it holds
 * the pod's namespaces, reaps orphans (it is PID 1 of a shared PID namespace)
 * and exits on SIGINT/SIGTERM. Built statically with Debian's gcc by
 * scripts/testbed.d/node.sh; no registry needed. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {.sa_handler = on_term};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  sigemptyset(&term.sa_mask);
  sigemptyset(&child.sa_mask);
  if (sigaction(SIGINT, &term, NULL) || sigaction(SIGTERM, &term, NULL) ||
      sigaction(SIGCHLD, &child, NULL))
    return 1;
  for (;;) pause();
}
