struct qstr { unsigned int hash; const char *name; };
struct dentry { int d_flags; struct qstr d_name; struct dentry *d_parent; };
struct path { void *mnt; struct dentry *dentry; };
struct file { int f_mode; struct path f_path; };
struct task_struct { long state; int pid; int tgid; struct task_struct *real_parent; };
struct pt_regs { unsigned long di, si, dx, r10, r8, r9, orig_ax; };
struct task_struct ts; struct file f; struct pt_regs r;
int main(void) { return ts.pid + f.f_mode + (int)r.di; }
