// Command tokenissuer is a small bearer-token service for a test registry (Docker's
// token authentication): it checks basic credentials and answers with an ES256 JWT whose
// x5c header carries the signing certificate, which the registry trusts as its root.
//
// Usage: tokenissuer -listen 127.0.0.1:0 -key key.pem -cert cert.pem -service S
//
//	-issuer I -user U -password P -addr-file FILE
package main

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	keyFile := flag.String("key", "", "EC private key (PEM)")
	certFile := flag.String("cert", "", "certificate of the key (PEM)")
	service := flag.String("service", "criox-test-registry", "audience")
	issuer := flag.String("issuer", "criox-test-issuer", "issuer")
	user := flag.String("user", "", "accepted user")
	password := flag.String("password", "", "accepted password")
	addrFile := flag.String("addr-file", "", "write the bound address here")
	flag.Parse()

	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		log.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		log.Fatal("no PEM key")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	key := parsed.(*ecdsa.PrivateKey)
	certPEM, err := os.ReadFile(*certFile)
	if err != nil {
		log.Fatal(err)
	}
	certBlock, _ := pem.Decode(certPEM)
	if certBlock == nil {
		log.Fatal("no PEM certificate")
	}

	http.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != *user || p != *password {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		var access []map[string]interface{}
		if scope := r.URL.Query().Get("scope"); scope != "" {
			parts := strings.Split(scope, ":")
			if len(parts) == 3 {
				access = append(access, map[string]interface{}{
					"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ","),
				})
			}
		}
		now := time.Now().Unix()
		header, _ := json.Marshal(map[string]interface{}{
			"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(certBlock.Bytes)},
		})
		claims, _ := json.Marshal(map[string]interface{}{
			"iss": *issuer, "sub": u, "aud": *service, "exp": now + 300, "nbf": now - 10,
			"iat": now, "jti": b64(big.NewInt(now).Bytes()), "access": access,
		})
		signing := b64(header) + "." + b64(claims)
		digest := sha256.Sum256([]byte(signing))
		rr, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sig := make([]byte, 64)
		rr.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		token := signing + "." + b64(sig)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": token, "access_token": token})
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(ln.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(ln, nil))
}
