# Login shells (bash -l, as some agents run their tools): /etc/profile resets PATH, so put back
# what the image promises — the default Python virtualenv (images that have one) and the usual
# per-user tool directories. SSH commands get the same PATH from /etc/environment.
for dir in "$HOME/.local/bin" "$HOME/.cargo/bin" "$HOME/go/bin" "$HOME/.rbenv/shims" /opt/venv/bin; do
    if [ -d "$dir" ]; then
        case ":$PATH:" in
            *":$dir:"*) ;;
            *) PATH="$dir:$PATH" ;;
        esac
    fi
done
export PATH
