"""More than one host: control defers each admitted turn as a Procrastinate job in the shared
PostgreSQL; `appliance worker` processes (one per libvirt host) pull and run them. See
docs/ARCHITECTURE.md § "Two roles"."""
