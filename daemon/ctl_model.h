/* silactl's offline commands on model files: eval and inspect. */
#ifndef SILA_CTL_MODEL_H
#define SILA_CTL_MODEL_H

/* `silactl eval MODEL [--data KIND:DIR] [--json] [--batch N]`; argv starts
 * after "eval". Returns the process exit status. */
int ctl_eval(int argc, char **argv);

/* `silactl inspect MODEL [--json]`. Returns the process exit status. */
int ctl_inspect(int argc, char **argv);

#endif
