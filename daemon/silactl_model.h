/* silactl's offline commands on model files: eval and inspect. */
#ifndef SILA_SILACTL_MODEL_H
#define SILA_SILACTL_MODEL_H

/* `silactl eval MODEL [--data KIND:DIR] [--json] [--batch N]`; argv starts
 * after "eval". Returns the process exit status. */
int silactl_eval(int argc, char **argv);

/* `silactl inspect MODEL [--json]`. Returns the process exit status. */
int silactl_inspect(int argc, char **argv);

#endif
