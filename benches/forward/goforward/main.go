// The reference article's Go forwarder, as a bench peer: a goroutine per
// direction copying with io.Copy, which between two *net.TCPConn is
// splice(2) on Linux, on one P (runtime.GOMAXPROCS(1)) as the article runs
// it. Two changes so it can run every workload: the addresses come from
// flags, and an EOF is passed on as a half-close (CloseWrite) instead of
// closing both sides, so request/response workloads that half-close work.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"runtime"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8848", "address to accept on")
	target := flag.String("target", "127.0.0.1:8849", "address to forward to")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Print(err)
			continue
		}
		go handle(conn.(*net.TCPConn), *target)
	}
}

func handle(client *net.TCPConn, target string) {
	defer client.Close()
	conn, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	server := conn.(*net.TCPConn)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(client, server)
		client.CloseWrite()
		close(done)
	}()
	io.Copy(server, client)
	server.CloseWrite()
	<-done
}
