#ifndef TERN_PROCESSOR_H
#define TERN_PROCESSOR_H

/// The processor the calling thread runs on now (0 where the system cannot say). A hint for keeping per-core
/// state: the thread may move to another processor right after.
int tern_current_processor(void);

#endif
