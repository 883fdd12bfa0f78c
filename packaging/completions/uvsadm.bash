# bash completion for uvsadm (ipvsadm's command line for uvsd).
# Installed as /usr/share/bash-completion/completions/uvsadm.

_uvsadm() {
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}

    local commands="-A --add-service -E --edit-service -D --delete-service
        -C --clear -R --restore -S --save -a --add-server -e --edit-server
        -d --delete-server -L -l --list -Z --zero --set --start-daemon
        --stop-daemon -h --help -v --version"
    local options="-t --tcp-service -u --udp-service --sctp-service
        -f --fwmark-service -s --scheduler -p --persistent -M --netmask
        -r --real-server -g --gatewaying -i --ipip -m --masquerading
        -w --weight -x --u-threshold -y --l-threshold -c --connection
        -n --numeric --stats --rate --thresholds --persistent-conn --nosort
        --sort --exact --tun-info --tun-type --tun-port --tun-nocsum
        --tun-csum --tun-remcsum -o --ops -b --sched-flags --pe -6 --ipv6
        --timeout --daemon --sync-maxlen
        --mcast-interface --syncid --mcast-group --mcast-port --mcast-ttl
        --json --socket"
    local schedulers="rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos"
    local flags="sh-fallback sh-port mh-fallback mh-port flag-1 flag-2 flag-3"

    case $prev in
        -s|--scheduler)
            COMPREPLY=($(compgen -W "$schedulers" -- "$cur"))
            return ;;
        -b|--sched-flags)
            COMPREPLY=($(compgen -W "$flags" -- "$cur"))
            return ;;
        --tun-type)
            COMPREPLY=($(compgen -W "ipip gue gre" -- "$cur"))
            return ;;
        --socket)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        -t|--tcp-service|-u|--udp-service|--sctp-service|-r|--real-server|\
        -w|--weight|-x|--u-threshold|-y|--l-threshold|-p|--persistent|\
        -M|--netmask|--tun-port|--pe|--mcast-interface|--syncid|\
        --mcast-group|--mcast-port|--mcast-ttl|-f|--fwmark-service)
            return ;;
    esac

    # The first word after an optional --socket PATH is the command.
    local i=1
    if [[ ${COMP_WORDS[1]} == --socket ]]; then
        i=3
    elif [[ ${COMP_WORDS[1]} == --socket=* ]]; then
        i=2
    fi
    if [[ $COMP_CWORD -le $i ]]; then
        COMPREPLY=($(compgen -W "$commands --socket" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    fi
}
complete -F _uvsadm uvsadm
