/* Hand-written glue for DPDK macros that are not functions. */
#include "wrapper.h"

/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int uvs_errno(void) { return rte_errno; }
void uvs_set_errno(int value) { rte_errno = value; }
