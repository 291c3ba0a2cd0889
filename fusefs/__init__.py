"""The FUSE daemon: the pyfuse3 adapter, open files, background services and the command line."""
