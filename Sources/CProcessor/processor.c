#define _GNU_SOURCE
#include "processor.h"

#if defined(__linux__)
#include <sched.h>
#endif

int tern_current_processor(void) {
#if defined(__linux__)
    int processor = sched_getcpu();
    return processor < 0 ? 0 : processor;
#else
    return 0;
#endif
}
